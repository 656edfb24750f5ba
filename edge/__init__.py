"""SiteWarden edge core: events, config, bus, store, rules, alerts, forwarding and the CLI."""

__version__ = "0.1.0"
