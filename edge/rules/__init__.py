"""Rules turn facts into alerts: the rule API and the rules the edge ships."""
