"""Passive VPN, Wi-Fi and LAN monitoring from a mirror port and a monitor-mode radio (issue 6)."""
