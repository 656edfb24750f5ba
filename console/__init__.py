"""Central console receiver: stores every site's alerts once and confirms each back to its site."""
