"""The kiosk web app: the context its pages share, the guards around every request, and its three routers."""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import segno
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from markupsafe import Markup
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.config import Settings
from kiosk import forms
from kiosk.api import api_router
from kiosk.auth import RateLimiter, StaffAuth
from kiosk.desk import Desk, Visit
from kiosk.forms import MSG, FormErrors
from kiosk.staff_routes import staff_router
from kiosk.text import QR_PREFIX
from kiosk.throttle import Lock, LoginThrottle
from kiosk.visitor_routes import visitor_router
from kiosk.web import CSRF_COOKIE, CSRF_FIELD, SECURITY_HEADERS, STATIC_DIR, Pages, svg

logger = logging.getLogger(__name__)

HSTS = "max-age=31536000"  # a year; no includeSubDomains: the box is reached by address or its own name


class Counters:
    """What the kiosk refused, by reason (shown in the log once per occurrence, counted here)."""

    def __init__(self) -> None:
        self.refused: dict[str, int] = {}

    def refuse(self, reason: str, request: Request, detail: str = "") -> None:
        """Count and log one refused request (never with the visitor's data)."""
        self.refused[reason] = self.refused.get(reason, 0) + 1
        client = request.client.host if request.client else "?"
        logger.warning("refused %s %s from %s: %s%s", request.method, request.url.path, client, reason,
                       f" ({detail})" if detail else "")


class Kiosk:
    """What the visitor pages and the reception console share: desk, staff authority, pages, limits, helpers."""

    def __init__(self, settings: Settings, desk: Desk, auth: StaffAuth) -> None:
        self.config = settings.kiosk
        self.tz = ZoneInfo(settings.site.timezone)
        self.desk = desk
        self.auth = auth
        self.hosts = self.config.hosts
        self.pages = Pages(self.tz, self.config.default_language, self.config.secure_cookies,
                           settings.site.name or settings.site.id, self.config.idle_return_s)
        self.counters = Counters()
        self.checkin_limit = RateLimiter(self.config.checkin_rate_per_min, 60.0)
        self.login_limit = LoginThrottle(self.config.login_attempts, self.config.login_window_min * 60,
                                         on_lock=self._audit_lock)

    def _audit_lock(self, lock: Lock, account: str, address: str, what: str) -> None:
        self.desk.audit("system", f"login_lock_{lock}", None, f"{account[:64]!r} from {address} (wrong {what}s)")

    def client_of(self, request: Request) -> str:
        """The client's address, for rate-limit keys: the forwarded one when a trusted proxy sent the request
        (uvicorn's proxy headers, `kiosk.trusted_proxies`), else the peer's."""
        return request.client.host if request.client else "?"

    async def read_form(self, request: Request) -> FormData:
        """The request's form, within the kiosk's limits."""
        return await request.form(max_fields=50, max_files=1, max_part_size=forms.MAX_FORM_BYTES)

    def msg(self, request: Request, key: str, **args: object) -> str:
        """One of the form messages, in the request's language."""
        return self.pages.gettext(self.pages.lang(request), MSG[key], args or None)

    def csrf_problem(self, request: Request, form: FormData) -> str | None:
        """None when the form's CSRF token matches its cookie; else the key of the message saying why, counted.

        No cookie at all is told apart from a stale one: it is what a browser does with the kiosk's Secure
        cookies when the page came over plain HTTP from another machine, and "open too long" would mislead.
        """
        if self.pages.csrf_ok(request, form.get(CSRF_FIELD)):
            return None
        if not request.cookies.get(CSRF_COOKIE):
            self.counters.refuse("cookie_missing", request, f"no cookie came back over {request.url.scheme}; "
                                 "browsers drop Secure cookies on plain HTTP to another machine")
            return "cookie_missing"
        self.counters.refuse("csrf", request)
        return "csrf"

    def csrf_refusal(self, request: Request, form: FormData) -> str | None:
        """None when the form's CSRF token matches its cookie; else the refusal, counted, in the visitor's words."""
        problem = self.csrf_problem(request, form)
        return None if problem is None else self.msg(request, problem)

    def error_texts(self, request: Request, errors: FormErrors) -> tuple[dict[str, str], list[str]]:
        """A form's errors in the request's language: by field, and those of the whole form."""
        lang = self.pages.lang(request)
        fields = {k: self.pages.gettext(lang, m, a or None) for k, (m, a) in errors.fields.items()}
        general = [self.pages.gettext(lang, m, a or None) for m, a in errors.general]
        return fields, general

    def host_choices(self) -> list[tuple[str, str, str]]:
        """(id, name, department) of every host, by name."""
        return sorted(((hid, h.name, h.department) for hid, h in self.hosts.items()), key=lambda t: t[1].casefold())

    def hostname(self, host_id: str) -> str:
        """A host's name, or the id of a host no longer in the directory."""
        host = self.hosts.get(host_id)
        return host.name if host else host_id

    def qr(self, code: str) -> Markup:
        """A QR code holding `code` the way the kiosk's code fields take a scan, as inline SVG."""
        return svg(segno.make(f"{QR_PREFIX}{code}", error="m").svg_inline(scale=5, border=2))

    def badge_context(self, visit: Visit) -> dict[str, Any]:
        """What the badge template shows of a visit on site."""
        return {"visit": visit, "host_name": self.hostname(visit.host_id),
                "valid_until": self.desk.badge_valid_until(visit), "qr": self.qr(visit.badge_code)}


def create_app(settings: Settings, desk: Desk, auth: StaffAuth) -> FastAPI:
    """The whole web app over one desk (visits) and one staff authority."""
    kiosk = Kiosk(settings, desk, auth)
    pages, counters = kiosk.pages, kiosk.counters
    app = FastAPI(title="SiteWarden kiosk API", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.desk = desk
    app.state.auth = auth
    app.state.counters = counters
    app.state.login_throttle = kiosk.login_limit
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router(desk, auth, counters))
    app.include_router(visitor_router(kiosk))
    app.include_router(staff_router(kiosk))

    hsts = settings.kiosk.tls_cert_file is not None  # served over TLS: browsers must never fall back to HTTP

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > forms.MAX_FORM_BYTES):
            counters.refuse("too_large", request, f"{length} bytes")
            if request.url.path.startswith("/api/"):
                return JSONResponse({"detail": "request larger than 3 MiB"}, status_code=413)
            return pages.render(request, "error.html", status=413, code=413)
        response = await call_next(request)
        if hsts:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        for key, value in SECURITY_HEADERS.items():
            if not (key == "Cache-Control" and request.url.path.startswith("/static/")):
                response.headers.setdefault(key, value)
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(exc.headers or {})  # Allow on 405, WWW-Authenticate on 401
        if exc.status_code == 405 and request.url.path.startswith("/api/"):
            # Starlette names only the first route that matched; the API path may have more (GET and DELETE).
            methods = {m.upper() for template, ops in app.openapi()["paths"].items()
                       if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), request.url.path) for m in ops}
            if methods:
                headers["Allow"] = ", ".join(sorted(methods))
        if request.url.path.startswith("/api/"):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)
        response = pages.render(request, "error.html", status=exc.status_code, code=exc.status_code)
        response.headers.update(headers)
        return response

    return app
