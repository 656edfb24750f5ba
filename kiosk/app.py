"""The kiosk web app: visitor pages at reception, the reception console for staff, the JSON API."""

from __future__ import annotations

import csv
import io
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import segno
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.config import Settings
from edge.events import utcnow
from kiosk import forms
from kiosk.api import api_router
from kiosk.auth import RateLimiter, StaffAuth, StaffSession
from kiosk.desk import Desk, Visit, VisitNotFound
from kiosk.forms import MSG, N_, FormErrors, check_visitor, data_url, unknown_fields
from kiosk.i18n import LANGUAGES
from kiosk.rows import RowCache
from kiosk.text import QR_PREFIX
from kiosk.web import CSRF_FIELD, LANG_COOKIE, SECURITY_HEADERS, STAFF_COOKIE, Pages, safe_next, svg

logger = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
VISITOR_FIELDS = {"name", "company", "host_id", "purpose", "email", "phone", CSRF_FIELD}


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


def create_app(settings: Settings, desk: Desk, auth: StaffAuth) -> FastAPI:
    """The whole web app over one desk (visits) and one staff authority."""
    kiosk = settings.kiosk
    tz = ZoneInfo(settings.site.timezone)
    pages = Pages(tz, kiosk.default_language, kiosk.secure_cookies, settings.site.name or settings.site.id)
    counters = Counters()
    checkin_limit = RateLimiter(kiosk.checkin_rate_per_min, 60.0)
    login_limit = RateLimiter(kiosk.login_attempts, kiosk.login_window_min * 60)
    app = FastAPI(title="SiteWarden kiosk API", version="1", docs_url=None, redoc_url=None,
                  openapi_url="/api/v1/openapi.json")
    app.state.desk = desk
    app.state.auth = auth
    app.state.counters = counters
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.include_router(api_router(desk, auth, counters))
    hosts = kiosk.hosts

    @app.middleware("http")
    async def guard(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > forms.MAX_FORM_BYTES):
            counters.refuse("too_large", request, f"{length} bytes")
            if request.url.path.startswith("/api/"):
                return JSONResponse({"detail": "request larger than 3 MiB"}, status_code=413)
            return pages.render(request, "error.html", status=413, code=413)
        response = await call_next(request)
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

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "?"

    async def read_form(request: Request) -> FormData:
        return await request.form(max_fields=50, max_files=1, max_part_size=forms.MAX_FORM_BYTES)

    def msg(request: Request, key: str, **args: object) -> str:
        return pages.gettext(pages.lang(request), MSG[key], args or None)

    def csrf_refusal(request: Request, form: FormData) -> str | None:
        """None when the form's CSRF token matches its cookie; else the refusal, counted, in the visitor's words."""
        if pages.csrf_ok(request, form.get(CSRF_FIELD)):
            return None
        counters.refuse("csrf", request)
        return msg(request, "csrf")

    def error_texts(request: Request, errors: FormErrors) -> tuple[dict[str, str], list[str]]:
        lang = pages.lang(request)
        fields = {k: pages.gettext(lang, m, a or None) for k, (m, a) in errors.fields.items()}
        general = [pages.gettext(lang, m, a or None) for m, a in errors.general]
        return fields, general

    def host_choices() -> list[tuple[str, str, str]]:
        return sorted(((hid, h.name, h.department) for hid, h in hosts.items()), key=lambda t: t[1].casefold())

    # -- visitor pages -----------------------------------------------------------------------------------------
    @app.get("/", include_in_schema=False)
    async def welcome(request: Request) -> Response:
        return pages.render(request, "welcome.html")

    @app.get("/lang/{code}", include_in_schema=False)
    async def switch_language(request: Request, code: str, next: str = "/") -> Response:
        response = pages.redirect(next)
        if code in LANGUAGES:
            pages.set_cookie(response, LANG_COOKIE, code, max_age=3600 * 24 * 365)
        return response

    @app.get("/hosts/search", include_in_schema=False)
    async def host_search(q: str = "") -> JSONResponse:
        from kiosk.text import normalize_name

        needle = normalize_name(q[:60])
        found = [{"id": hid, "name": name, "department": dept} for hid, name, dept in host_choices()
                 if needle and needle in normalize_name(name)][:10]
        return JSONResponse(found)

    def checkin_page(request: Request, values: dict[str, str] | None = None, errors: FormErrors | None = None,
                     status: int = 200) -> Response:
        fields, general = error_texts(request, errors) if errors else ({}, [])
        return pages.render(request, "checkin.html", status=status, values=values or {}, errors=fields,
                            general=general, hosts=host_choices(), limits=forms.LIMITS,
                            retention_days=kiosk.retention_days)

    @app.get("/checkin", include_in_schema=False)
    async def checkin_form(request: Request) -> Response:
        return checkin_page(request)

    @app.post("/checkin", include_in_schema=False)
    async def checkin_submit(request: Request) -> Response:
        form = await read_form(request)
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
        shown = {k: v[:200] for k, v in values.items() if k in VISITOR_FIELDS}
        if csrf_refusal(request, form) is not None:
            return checkin_page(request, shown, FormErrors({}, [(MSG["csrf"], {})]), status=403)
        client = f"checkin:{client_of(request)}"
        if checkin_limit.blocked(client):
            counters.refuse("rate_limited", request)
            return checkin_page(request, shown, FormErrors({}, [(MSG["rate_limited"], {})]), status=429)
        extra = unknown_fields(form, VISITOR_FIELDS)
        if extra:
            counters.refuse("unknown_fields", request, ", ".join(sorted(set(form) - VISITOR_FIELDS))[:200])
            return checkin_page(request, shown, extra, status=400)
        details, errors = check_visitor(values, hosts)
        if details is None:
            counters.refuse("invalid_form", request, ", ".join(sorted(errors.fields)))
            return checkin_page(request, shown, errors, status=400)
        checkin_limit.hit(client)
        started = await run_in_threadpool(desk.start_walk_in, details, pages.lang(request))
        if started.outcome == "held":
            return pages.redirect("/wait")
        return pages.redirect(f"/v/{started.flow_token}/next")

    @app.get("/wait", include_in_schema=False)
    async def wait(request: Request) -> Response:
        return pages.render(request, "wait.html")

    async def flow_visit(token: str, request: Request, states: tuple[str, ...] = ("in_progress",)) -> Visit | None:
        try:
            return await run_in_threadpool(desk.flow_visit, token, states)
        except VisitNotFound:
            counters.refuse("flow_expired", request)
            return None

    def expired(request: Request) -> Response:
        return pages.render(request, "message.html", status=404, title_msg=msg(request, "flow_expired"),
                            back="/")

    @app.get("/v/{token}/next", include_in_schema=False)
    async def flow_next(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        needs = await run_in_threadpool(desk.needs_rules, visit)
        return pages.redirect(f"/v/{token}/rules" if needs else f"/v/{token}/photo")

    def rules_page(request: Request, token: str, visit: Visit, error: str | None = None,
                   status: int = 200) -> Response:
        lang = pages.lang(request)
        return pages.render(request, "rules.html", status=status, token=token, visit=visit,
                            rules_text=kiosk.house_rules.text[lang], rules_version=kiosk.house_rules.version,
                            error=error)

    @app.get("/v/{token}/rules", include_in_schema=False)
    async def rules_form(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        return expired(request) if visit is None else rules_page(request, token, visit)

    @app.post("/v/{token}/rules", include_in_schema=False)
    async def rules_submit(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        form = await read_form(request)
        if (refused := csrf_refusal(request, form)) is not None:
            return rules_page(request, token, visit, refused, 403)
        extra = unknown_fields(form, {"signature", "accept", CSRF_FIELD})
        if extra:
            counters.refuse("unknown_fields", request)
            return rules_page(request, token, visit, error_texts(request, extra)[1][0], 400)
        if form.get("accept") != "yes":
            return rules_page(request, token, visit, msg(request, "accept_missing"), 400)
        raw = form.get("signature")
        if not raw:
            return rules_page(request, token, visit, msg(request, "signature_missing"), 400)
        png = data_url(raw if isinstance(raw, str) else "", "image/png", forms.MAX_SIGNATURE_BYTES)
        if png is None:
            counters.refuse("signature_bad", request)
            return rules_page(request, token, visit, msg(request, "signature_bad"), 400)
        await run_in_threadpool(desk.sign_rules, token, png)
        return pages.redirect(f"/v/{token}/photo")

    @app.get("/v/{token}/photo", include_in_schema=False)
    async def photo_form(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        if await run_in_threadpool(desk.needs_rules, visit):
            return pages.redirect(f"/v/{token}/rules")
        return pages.render(request, "photo.html", token=token, error=None)

    @app.post("/v/{token}/photo", include_in_schema=False)
    async def photo_submit(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        form = await read_form(request)
        if (refused := csrf_refusal(request, form)) is not None:
            return pages.render(request, "photo.html", status=403, token=token, error=refused)
        if unknown_fields(form, {"photo", "skip", CSRF_FIELD}):
            counters.refuse("unknown_fields", request)
            return pages.render(request, "photo.html", status=400, token=token,
                                error=error_texts(request, unknown_fields(form, {"photo", "skip", CSRF_FIELD})
                                                  or FormErrors({}, []))[1][0])
        jpeg = None
        raw = form.get("photo")
        if raw and form.get("skip") != "yes":
            jpeg = data_url(raw if isinstance(raw, str) else "", "image/jpeg", forms.MAX_PHOTO_BYTES)
            if jpeg is None:
                counters.refuse("photo_bad", request)
                return pages.render(request, "photo.html", status=400, token=token, error=msg(request, "photo_bad"))
        try:
            await run_in_threadpool(desk.complete, token, jpeg)
        except VisitNotFound:
            return pages.redirect(f"/v/{token}/next")
        return pages.redirect(f"/v/{token}/badge")

    def badge_context(visit: Visit) -> dict[str, Any]:
        qr = segno.make(f"{QR_PREFIX}{visit.badge_code}", error="m")
        host = hosts.get(visit.host_id)
        return {"visit": visit, "host_name": host.name if host else visit.host_id,
                "valid_until": desk.badge_valid_until(visit), "qr": svg(qr.svg_inline(scale=5, border=2))}

    @app.get("/v/{token}/badge", include_in_schema=False)
    async def badge(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request, states=("on_site",))
        if visit is None:
            return expired(request)
        return pages.render(request, "badge.html", token=token, **badge_context(visit))

    @app.get("/v/{token}/photo.jpg", include_in_schema=False)
    async def badge_photo(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request, states=("on_site",))
        data = await run_in_threadpool(desk.photo, visit.id) if visit else None
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg")

    def invite_page(request: Request, error: str | None = None, status: int = 200, code: str = "") -> Response:
        return pages.render(request, "invite.html", status=status, error=error, code=code)

    @app.get("/invite", include_in_schema=False)
    async def invite_form(request: Request) -> Response:
        return invite_page(request)

    @app.post("/invite", include_in_schema=False)
    async def invite_lookup(request: Request) -> Response:
        form = await read_form(request)
        code = str(form.get("code", ""))[:40]
        if (refused := csrf_refusal(request, form)) is not None:
            return invite_page(request, refused, 403, code)
        return pages.redirect(f"/invite/{code.strip() or '-'}")

    @app.get("/invite/{code}", include_in_schema=False)
    async def invite_confirm(request: Request, code: str) -> Response:
        client = f"invite:{client_of(request)}"
        if checkin_limit.blocked(client):
            counters.refuse("rate_limited", request)
            return invite_page(request, msg(request, "rate_limited"), 429, code[:40])
        try:
            visit = await run_in_threadpool(desk.find_invite, code)
        except VisitNotFound:
            checkin_limit.hit(client)  # guessing codes costs tries
            counters.refuse("invite_unknown", request)
            return invite_page(request, msg(request, "invite_unknown"), 404, code[:40])
        host = hosts.get(visit.host_id)
        return pages.render(request, "invite_confirm.html", visit=visit, code=code,
                            host_name=host.name if host else visit.host_id)

    @app.post("/invite/{code}", include_in_schema=False)
    async def invite_start(request: Request, code: str) -> Response:
        form = await read_form(request)
        if (refused := csrf_refusal(request, form)) is not None:
            return invite_page(request, refused, 403, code[:40])
        try:
            started = await run_in_threadpool(desk.start_invited, code, pages.lang(request))
        except VisitNotFound:
            counters.refuse("invite_unknown", request)
            return invite_page(request, msg(request, "invite_unknown"), 404, code[:40])
        if started.outcome == "held":
            return pages.redirect("/wait")
        return pages.redirect(f"/v/{started.flow_token}/next")

    def checkout_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        return pages.render(request, "checkout.html", status=status, error=error)

    @app.get("/checkout", include_in_schema=False)
    async def checkout_form(request: Request) -> Response:
        return checkout_page(request)

    @app.post("/checkout", include_in_schema=False)
    async def checkout_submit(request: Request) -> Response:
        form = await read_form(request)
        if (refused := csrf_refusal(request, form)) is not None:
            return checkout_page(request, refused, 403)
        client = f"checkout:{client_of(request)}"
        if checkin_limit.blocked(client):
            counters.refuse("rate_limited", request)
            return checkout_page(request, msg(request, "rate_limited"), 429)
        try:
            visit = await run_in_threadpool(desk.check_out_code, str(form.get("code", ""))[:40])
        except VisitNotFound:
            checkin_limit.hit(client)
            counters.refuse("code_unknown", request)
            return checkout_page(request, msg(request, "code_unknown"), 404)
        return pages.render(request, "goodbye.html", visit=visit)

    # -- reception console --------------------------------------------------------------------------------------
    def staff(request: Request) -> StaffSession | None:
        return auth.session(request.cookies.get(STAFF_COOKIE))

    def need(request: Request, permission: str) -> StaffSession | Response:
        session = staff(request)
        if session is None or session.stage != "full":
            return pages.redirect(f"/staff/login?next={request.url.path}")
        if not session.may(permission):
            counters.refuse("forbidden", request, f"{session.username} ({session.role}) lacks {permission}")
            return pages.render(request, "error.html", status=403, code=403, session=session)
        return session

    async def staff_post(request: Request, permission: str) -> tuple[StaffSession, FormData] | Response:
        result = need(request, permission)
        if isinstance(result, Response):
            return result
        form = await read_form(request)
        if not isinstance(form.get(CSRF_FIELD), str) or form.get(CSRF_FIELD) != result.csrf:
            counters.refuse("csrf", request, result.username)
            return pages.render(request, "error.html", status=403, code=403, session=result,
                                detail=msg(request, "csrf"))
        return result, form

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        return pages.render(request, "staff_login.html", status=status, error=error,
                            next=safe_next(request.query_params.get("next", "/staff")))

    @app.get("/staff/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        return login_page(request)

    @app.post("/staff/login", include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        form = await read_form(request)
        if (refused := csrf_refusal(request, form)) is not None:
            return login_page(request, refused, 403)
        username = str(form.get("username", ""))[:64].strip()
        keys = (f"login-user:{username.casefold()}", f"login-client:{client_of(request)}")
        if login_limit.blocked(*keys):
            counters.refuse("rate_limited", request, f"login as {username!r}")
            return login_page(request, msg(request, "rate_limited"), 429)
        token = await run_in_threadpool(auth.check_password, username, str(form.get("password", ""))[:256])
        if token is None:
            login_limit.hit(*keys)
            counters.refuse("bad_login", request, f"user {username!r}")
            return login_page(request, pages.gettext(pages.lang(request), N_("Wrong user name or password.")), 401)
        response = pages.redirect(f"/staff/totp?next={safe_next(str(form.get('next', '/staff')))}")
        pages.set_cookie(response, STAFF_COOKIE, token)
        return response

    @app.get("/staff/totp", include_in_schema=False)
    async def totp_form(request: Request) -> Response:
        session = staff(request)
        if session is None:
            return pages.redirect("/staff/login")
        return pages.render(request, "staff_totp.html", error=None,
                            next=safe_next(request.query_params.get("next", "/staff")))

    @app.post("/staff/totp", include_in_schema=False)
    async def totp_submit(request: Request) -> Response:
        form = await read_form(request)
        token = request.cookies.get(STAFF_COOKIE, "")
        session = auth.session(token)
        nxt = safe_next(str(form.get("next", "/staff")))
        if session is None:
            return pages.redirect("/staff/login")
        if (refused := csrf_refusal(request, form)) is not None:
            return pages.render(request, "staff_totp.html", status=403, error=refused, next=nxt)
        keys = (f"login-user:{session.username.casefold()}", f"login-client:{client_of(request)}")
        if login_limit.blocked(*keys):
            counters.refuse("rate_limited", request, f"code for {session.username}")
            return pages.render(request, "staff_totp.html", status=429, error=msg(request, "rate_limited"), next=nxt)
        code = str(form.get("code", "")).replace(" ", "")[:10]
        if not await run_in_threadpool(auth.check_totp, token, code):
            login_limit.hit(*keys)
            counters.refuse("bad_totp", request, session.username)
            return pages.render(request, "staff_totp.html", status=401, next=nxt,
                                error=pages.gettext(pages.lang(request), N_("That code is wrong or was used already. "
                                                                             "Wait for the next code.")))
        return pages.redirect(nxt if nxt.startswith("/staff") else "/staff")

    @app.post("/staff/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        result = await staff_post(request, "view")
        if isinstance(result, Response):
            return result
        await run_in_threadpool(auth.logout, request.cookies.get(STAFF_COOKIE, ""))
        response = pages.redirect("/staff/login")
        response.delete_cookie(STAFF_COOKIE, path="/")
        return response

    def hostname(host_id: str) -> str:
        host = hosts.get(host_id)
        return host.name if host else host_id

    rows = RowCache(pages.envs, tz, hostname)

    @app.get("/staff", include_in_schema=False)
    async def console(request: Request) -> Response:
        session = need(request, "view")
        if isinstance(session, Response):
            return session
        on_site, expected = await run_in_threadpool(lambda: (desk.on_site(), desk.expected_today()))
        now = utcnow()
        overdue = [v for v in on_site if v.state == "on_site" and v.expected_end and v.expected_end < now]
        lang, manage = pages.lang(request), session.may("manage_visits")
        return pages.render(request, "staff_console.html", session=session, now=now, lang=lang,
                            on_site=rows.rows(lang, "on_site", on_site, manage, now),
                            overdue=rows.rows(lang, "on_site", overdue, manage, now),
                            expected=rows.rows(lang, "expected", expected, manage, now),
                            notice=request.query_params.get("done"))

    @app.post("/staff/visits/{visit_id}/{action}", include_in_schema=False)
    async def visit_action(request: Request, visit_id: str, action: str) -> Response:
        result = await staff_post(request, "manage_visits")
        if isinstance(result, Response):
            return result
        session, _ = result
        do = {"checkout": lambda: desk.check_out(visit_id, by="reception", actor=session.username),
              "release": lambda: desk.release(visit_id, session.username),
              "refuse": lambda: desk.refuse(visit_id, session.username),
              "cancel": lambda: desk.cancel(visit_id, session.username)}.get(action)
        if do is None:
            raise StarletteHTTPException(404)
        try:
            await run_in_threadpool(do)
        except VisitNotFound:
            return pages.redirect("/staff?done=stale")
        if action == "release":
            return pages.redirect(f"/staff/visits/{visit_id}/badge")
        return pages.redirect(f"/staff?done={action}")

    @app.get("/staff/visits/{visit_id}/badge", include_in_schema=False)
    async def staff_badge(request: Request, visit_id: str) -> Response:
        session = need(request, "manage_visits")
        if isinstance(session, Response):
            return session
        try:
            visit = await run_in_threadpool(desk.get, visit_id)
        except VisitNotFound:
            raise StarletteHTTPException(404) from None
        if visit.state != "on_site":
            raise StarletteHTTPException(404)
        await run_in_threadpool(desk.audit, session.username, "print_badge", visit_id)
        return pages.render(request, "badge.html", token=None, session=session, **badge_context(visit))

    @app.get("/staff/visits/{visit_id}/invite", include_in_schema=False)
    async def staff_invite(request: Request, visit_id: str) -> Response:
        """A printable invite: its QR code holds the invite code the way the kiosk's invite field takes it."""
        session = need(request, "manage_visits")
        if isinstance(session, Response):
            return session
        try:
            visit = await run_in_threadpool(desk.get, visit_id)
        except VisitNotFound:
            raise StarletteHTTPException(404) from None
        if visit.state != "expected" or not visit.invite_code:
            raise StarletteHTTPException(404)
        host = hosts.get(visit.host_id)
        qr = segno.make(f"{QR_PREFIX}{visit.invite_code}", error="m")
        return pages.render(request, "staff_invite.html", session=session, visit=visit,
                            host_name=host.name if host else visit.host_id, qr=svg(qr.svg_inline(scale=5, border=2)))

    @app.get("/staff/evacuation", include_in_schema=False)
    async def evacuation(request: Request) -> Response:
        session = need(request, "view")
        if isinstance(session, Response):
            return session
        on_site = await run_in_threadpool(desk.on_site)
        await run_in_threadpool(desk.audit, session.username, "roll_call", None, f"{len(on_site)} on site")
        return pages.render(request, "staff_evacuation.html", session=session, on_site=on_site, hostname=hostname,
                            now=utcnow())

    @app.get("/staff/sw.js", include_in_schema=False)
    async def service_worker() -> Response:
        body = (STATIC_DIR / "roll-call-sw.js").read_text(encoding="utf-8")
        return Response(body, media_type="text/javascript", headers={"Service-Worker-Allowed": "/staff/"})

    def expected_page(request: Request, session: StaffSession, values: dict[str, str] | None = None,
                      errors: FormErrors | None = None, status: int = 200, created: Visit | None = None,
                      imported: int | None = None) -> Response:
        fields, general = error_texts(request, errors) if errors else ({}, [])
        return pages.render(request, "staff_expected.html", status=status, session=session, values=values or {},
                            errors=fields, general=general, hosts=host_choices(), created=created,
                            imported=imported, limits=forms.LIMITS)

    @app.get("/staff/expected", include_in_schema=False)
    async def expected_form(request: Request) -> Response:
        session = need(request, "manage_visits")
        if isinstance(session, Response):
            return session
        return expected_page(request, session)

    def parse_local(text: str) -> datetime | None:
        try:
            moment = datetime.fromisoformat(text.strip().replace(" ", "T"))
        except ValueError:
            return None
        return moment.replace(tzinfo=tz) if moment.tzinfo is None else moment

    def check_expected(values: dict[str, str]) -> tuple[Any, FormErrors]:
        details, errors = check_visitor(values, hosts)
        start = parse_local(values.get("start", ""))
        end = parse_local(values.get("end", "")) if values.get("end") else None
        if start is None:
            errors.fields["start"] = (MSG["date_bad"], {})
        if values.get("end") and end is None:
            errors.fields["end"] = (MSG["date_bad"], {})
        if start and end and end <= start:
            errors.fields["end"] = (MSG["end_before_start"], {})
        if errors or details is None or start is None:
            return None, errors
        return (details, start, end or start + timedelta(hours=kiosk.visit_hours)), errors

    @app.post("/staff/expected", include_in_schema=False)
    async def expected_submit(request: Request) -> Response:
        result = await staff_post(request, "manage_visits")
        if isinstance(result, Response):
            return result
        session, form = result
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
        extra = unknown_fields(form, VISITOR_FIELDS | {"start", "end"})
        if extra:
            counters.refuse("unknown_fields", request)
            return expected_page(request, session, values, extra, 400)
        checked, errors = check_expected(values)
        if checked is None:
            counters.refuse("invalid_form", request, ", ".join(sorted(errors.fields)))
            return expected_page(request, session, values, errors, 400)
        details, start, end = checked
        visit = await run_in_threadpool(desk.pre_register, details, start, end, session.username)
        return expected_page(request, session, created=visit)

    @app.post("/staff/expected/import", include_in_schema=False)
    async def expected_import(request: Request) -> Response:
        result = await staff_post(request, "manage_visits")
        if isinstance(result, Response):
            return result
        session, form = result
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            return expected_page(request, session, errors=FormErrors({}, [(N_("Choose a CSV file."), {})]),
                                 status=400)
        raw = await upload.read(forms.MAX_FORM_BYTES + 1)
        rows, problems = parse_visits_csv(raw, check_expected)
        if problems:
            counters.refuse("csv_invalid", request, f"{len(problems)} bad rows")
            return expected_page(request, session, status=400, errors=FormErrors({}, [
                (pages.gettext(pages.lang(request), N_("Nothing was imported. Line %(line)s: %(problem)s")),
                 {"line": line, "problem": pages.gettext(pages.lang(request), text, args)})
                for line, text, args in problems[:20]]))

        def store_all() -> int:
            for details, start, end in rows:
                desk.pre_register(details, start, end, session.username)
            return len(rows)

        count = await run_in_threadpool(store_all)
        return expected_page(request, session, imported=count)

    @app.get("/staff/audit", include_in_schema=False)
    async def audit(request: Request) -> Response:
        session = need(request, "audit")
        if isinstance(session, Response):
            return session
        entries = await run_in_threadpool(desk.audit_log)
        return pages.render(request, "staff_audit.html", session=session, entries=entries)

    return app


CSV_COLUMNS = ("name", "company", "host_id", "start", "end", "email", "phone", "purpose")


def parse_visits_csv(raw: bytes, check: Callable[[dict[str, str]], tuple[Any, FormErrors]]
                     ) -> tuple[list[Any], list[tuple[int, str, dict[str, object]]]]:
    """Rows of a pre-registration CSV, all checked first: any bad row means nothing is imported."""
    problems: list[tuple[int, str, dict[str, object]]] = []
    if len(raw) > forms.MAX_FORM_BYTES:
        return [], [(0, N_("The file is too large."), {})]
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        return [], [(0, N_("The file is not UTF-8 text."), {})]
    reader = csv.DictReader(io.StringIO(text))
    missing = {"name", "host_id", "start"} - set(reader.fieldnames or ())
    if missing:
        return [], [(1, N_("The header lacks a column: %(columns)s"), {"columns": ", ".join(sorted(missing))})]
    unknown = set(reader.fieldnames or ()) - set(CSV_COLUMNS)
    if unknown:
        return [], [(1, N_("The header has unknown columns: %(columns)s"), {"columns": ", ".join(sorted(unknown))})]
    rows = []
    for line, row in enumerate(reader, start=2):
        checked, errors = check({k: (v or "") for k, v in row.items() if k is not None})
        if checked is None:
            problems.extend((line, N_("%(field)s: %(message)s"), {"field": field, "message": message % args
                                                                                  if args else message})
                            for field, (message, args) in errors.fields.items())
        else:
            rows.append(checked)
        if len(rows) > 5000:
            return [], [(line, N_("More than 5000 rows: split the file."), {})]
    return rows, problems
