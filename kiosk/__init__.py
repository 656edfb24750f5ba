"""Visitor kiosk at reception and the reception console, a FastAPI web app (issue 4)."""
