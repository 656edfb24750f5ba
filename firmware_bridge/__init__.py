"""Badge readers on serial lines: OSDP through libosdp and Wiegand behind a microcontroller (issue 3)."""
