"""The baseline for bench/kiosk.py: a bare FastAPI app with one HTML route and one form POST, same server."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse

app = FastAPI()


@app.get("/", response_class=HTMLResponse)
async def page() -> str:
    return "<!doctype html><title>bare</title><p>hello</p>"


@app.post("/form", response_class=HTMLResponse)
async def form(request: Request) -> str:
    data = await request.form()
    return f"<p>{len(data)}</p>"
