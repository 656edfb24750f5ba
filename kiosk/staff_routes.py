"""The reception console: staff sign-in, the visits on site and expected, badges, invites, roll call, audit."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from edge.events import utcnow
from kiosk import forms
from kiosk.audit_view import audit_lines
from kiosk.auth import StaffSession, UserError, WrongPassword
from kiosk.desk import Visit, VisitNotFound
from kiosk.forms import MSG, N_, FormErrors, check_visitor, parse_visits_csv, unknown_fields
from kiosk.i18n import LANGUAGES
from kiosk.rows import RowCache
from kiosk.web import CSRF_FIELD, STAFF_COOKIE, STATIC_DIR, VISITOR_FIELDS, safe_next

ROLL_CALL_COOKIE = "sw_roll"  # readable by the service worker: the session its roll-call copy belongs to
ROLL_CALL_HEADER = "X-Roll-Call-Key"
ROLL_CALL_EXPIRES_HEADER = "X-Roll-Call-Expires"  # the session's end, in ms since the epoch: the copy's end too
# Logging out leaves nothing in the browser: HTTP cache, Cache Storage (the roll call) and service workers.
CLEAR_SITE_DATA = '"cache", "storage"'


def roll_call_key(token: str) -> str:
    """The marker of one staff session's roll-call copy (derived from the session token, never revealing it)."""
    return hashlib.sha256(b"sitewarden roll call\0" + token.encode()).hexdigest()[:32]


def login_url(path: str, query: str, lang: str | None) -> str:
    """The login page that comes back to `path?query` afterwards, in the language the visitor asked for."""
    nxt = path + (f"?{query}" if query else "")
    return f"/staff/login?next={quote(nxt, safe='/')}" + (f"&lang={lang}" if lang in LANGUAGES else "")

if TYPE_CHECKING:
    from kiosk.app import Kiosk


def staff_router(kiosk: Kiosk) -> APIRouter:
    """The console's pages, in the order they are matched (none of them in the API schema)."""
    router = APIRouter()
    pages, desk, auth, counters, login_limit = kiosk.pages, kiosk.desk, kiosk.auth, kiosk.counters, kiosk.login_limit

    def staff(request: Request) -> StaffSession | None:
        return auth.session(request.cookies.get(STAFF_COOKIE))

    def need(request: Request, permission: str) -> StaffSession | Response:
        session = staff(request)
        if session is None or session.stage != "full":
            return pages.redirect(login_url(request.url.path, request.url.query, request.query_params.get("lang")))
        if session.must_change_password and request.url.path != "/staff/logout":
            return pages.redirect("/staff/password")
        if not session.may(permission):
            counters.refuse("forbidden", request, f"{session.username} ({session.role}) lacks {permission}")
            return pages.render(request, "error.html", status=403, code=403, session=session)
        return session

    async def staff_post(request: Request, permission: str) -> tuple[StaffSession, FormData] | Response:
        result = need(request, permission)
        if isinstance(result, Response):
            return result
        form = await kiosk.read_form(request)
        if not isinstance(form.get(CSRF_FIELD), str) or form.get(CSRF_FIELD) != result.csrf:
            counters.refuse("csrf", request, result.username)
            return pages.render(request, "error.html", status=403, code=403, session=result,
                                detail=kiosk.msg(request, "csrf"))
        return result, form

    async def managed_visit(request: Request, visit_id: str, state: str) -> tuple[StaffSession, Visit] | Response:
        """The visit a reception page is about when it is in `state` (else 404), or the sign-in or refusal page."""
        session = need(request, "manage_visits")
        if isinstance(session, Response):
            return session
        try:
            visit = await run_in_threadpool(desk.get, visit_id)
        except VisitNotFound:
            raise StarletteHTTPException(404) from None
        if visit.state != state:
            raise StarletteHTTPException(404)
        return session, visit

    def login_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        return pages.render(request, "staff_login.html", status=status, error=error,
                            next=safe_next(request.query_params.get("next", "/staff")))

    @router.get("/staff/login", include_in_schema=False)
    async def login_form(request: Request) -> Response:
        return login_page(request)

    @router.post("/staff/login", include_in_schema=False)
    async def login_submit(request: Request) -> Response:
        form = await kiosk.read_form(request)
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return login_page(request, refused, 403)
        username = str(form.get("username", ""))[:64].strip()
        address = kiosk.client_of(request)
        known = await run_in_threadpool(auth.known_address, username, address)
        with login_limit.attempt(username, address, known) as attempt:
            if not attempt.verdict.allowed:
                counters.refuse("rate_limited", request, f"login as {username!r}: {attempt.verdict.lock}")
                return login_page(request, kiosk.msg(request, "rate_limited"), 429)
            token = await run_in_threadpool(auth.check_password, username, str(form.get("password", ""))[:256])
            if token is None:
                await run_in_threadpool(attempt.failed, "password")
                counters.refuse("bad_login", request, f"user {username!r}")
                return login_page(request, pages.gettext(pages.lang(request), N_("Wrong user name or password.")),
                                  401)
        response = pages.redirect(f"/staff/totp?next={quote(safe_next(str(form.get('next', '/staff'))), safe='/')}")
        pages.set_cookie(response, STAFF_COOKIE, token)
        return response

    @router.get("/staff/totp", include_in_schema=False)
    async def totp_form(request: Request) -> Response:
        session = staff(request)
        if session is None:
            return pages.redirect("/staff/login")
        return pages.render(request, "staff_totp.html", error=None,
                            next=safe_next(request.query_params.get("next", "/staff")))

    @router.post("/staff/totp", include_in_schema=False)
    async def totp_submit(request: Request) -> Response:
        form = await kiosk.read_form(request)
        token = request.cookies.get(STAFF_COOKIE, "")
        session = auth.session(token)
        nxt = safe_next(str(form.get("next", "/staff")))
        if session is None:
            return pages.redirect("/staff/login")
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return pages.render(request, "staff_totp.html", status=403, error=refused, next=nxt)
        address = kiosk.client_of(request)
        known = await run_in_threadpool(auth.known_address, session.username, address)
        with login_limit.attempt(session.username, address, known) as attempt:
            if not attempt.verdict.allowed:
                counters.refuse("rate_limited", request, f"code for {session.username}: {attempt.verdict.lock}")
                return pages.render(request, "staff_totp.html", status=429, next=nxt,
                                    error=kiosk.msg(request, "rate_limited"))
            code = str(form.get("code", "")).replace(" ", "")[:10]
            if not await run_in_threadpool(auth.check_totp, token, code):
                await run_in_threadpool(attempt.failed, "code")
                counters.refuse("bad_totp", request, session.username)
                return pages.render(request, "staff_totp.html", status=401, next=nxt,
                                    error=pages.gettext(pages.lang(request), N_("That code is wrong or was used "
                                                                                 "already. Wait for the next code.")))
        login_limit.succeeded(session.username, address)
        await run_in_threadpool(auth.remember_address, session.username, address)
        if session.must_change_password:
            return pages.redirect("/staff/password")
        return pages.redirect(nxt if nxt.startswith("/staff") else "/staff")

    @router.get("/staff/password", include_in_schema=False)
    async def password_form(request: Request) -> Response:
        session = staff(request)
        if session is None or session.stage != "full":
            return pages.redirect("/staff/login")
        return pages.render(request, "staff_password.html", session=session, error=None)

    @router.post("/staff/password", include_in_schema=False)
    async def password_submit(request: Request) -> Response:
        """A new password, chosen by the user: required after `sitewarden kiosk user reset-password`, else only
        with the current one. The user's other sessions end."""
        session = staff(request)
        if session is None or session.stage != "full":
            return pages.redirect("/staff/login")
        form = await kiosk.read_form(request)
        if not isinstance(form.get(CSRF_FIELD), str) or form.get(CSRF_FIELD) != session.csrf:
            counters.refuse("csrf", request, session.username)
            return pages.render(request, "staff_password.html", status=403, session=session,
                                error=kiosk.msg(request, "csrf"))
        new, again = str(form.get("password", ""))[:256], str(form.get("again", ""))[:256]
        current = str(form.get("current", ""))[:256]
        lang = pages.lang(request)
        if new != again:
            return pages.render(request, "staff_password.html", status=400, session=session,
                                error=pages.gettext(lang, N_("The two passwords differ.")))
        address = kiosk.client_of(request)
        # A wrong current password is a guess like a wrong login: the same limits hold it.
        with login_limit.attempt(session.username, address, True) as attempt:
            if not attempt.verdict.allowed:
                counters.refuse("rate_limited", request, f"password change by {session.username}")
                return pages.render(request, "staff_password.html", status=429, session=session,
                                    error=kiosk.msg(request, "rate_limited"))
            try:
                await run_in_threadpool(auth.change_password, request.cookies.get(STAFF_COOKIE, ""), new, current)
            except WrongPassword:
                await run_in_threadpool(attempt.failed, "password")
                counters.refuse("bad_password", request, f"password change by {session.username}")
                return pages.render(request, "staff_password.html", status=401, session=session,
                                    error=pages.gettext(lang, N_("Your current password is wrong.")))
            except UserError:
                return pages.render(request, "staff_password.html", status=400, session=session,
                                    error=pages.gettext(lang, N_("Use at least 12 characters.")))
        return pages.redirect("/staff")

    @router.post("/staff/logout", include_in_schema=False)
    async def logout(request: Request) -> Response:
        result = await staff_post(request, "view")
        if isinstance(result, Response):
            response = result  # signed out already (or refused): the browser still forgets what it kept
        else:
            await run_in_threadpool(auth.logout, request.cookies.get(STAFF_COOKIE, ""))
            response = pages.redirect("/staff/login")
            response.delete_cookie(STAFF_COOKIE, path="/")
        response.delete_cookie(ROLL_CALL_COOKIE, path="/")
        response.headers["Clear-Site-Data"] = CLEAR_SITE_DATA
        return response

    rows = RowCache(pages.envs, kiosk.tz, kiosk.hostname)

    @router.get("/staff", include_in_schema=False)
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

    @router.post("/staff/visits/{visit_id}/{action}", include_in_schema=False)
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

    @router.get("/staff/visits/{visit_id}/badge", include_in_schema=False)
    async def staff_badge(request: Request, visit_id: str) -> Response:
        result = await managed_visit(request, visit_id, "on_site")
        if isinstance(result, Response):
            return result
        session, visit = result
        await run_in_threadpool(desk.audit, session.username, "print_badge", visit_id)
        return pages.render(request, "badge.html", token=None, session=session, **kiosk.badge_context(visit))

    @router.get("/staff/visits/{visit_id}/invite", include_in_schema=False)
    async def staff_invite(request: Request, visit_id: str) -> Response:
        """A printable invite: its QR code holds the invite code the way the kiosk's invite field takes it."""
        result = await managed_visit(request, visit_id, "expected")
        if isinstance(result, Response):
            return result
        session, visit = result
        if not visit.invite_code:
            raise StarletteHTTPException(404)
        return pages.render(request, "staff_invite.html", session=session, visit=visit,
                            host_name=kiosk.hostname(visit.host_id), qr=kiosk.qr(visit.invite_code))

    @router.get("/staff/evacuation", include_in_schema=False)
    async def evacuation(request: Request) -> Response:
        session = need(request, "view")
        if isinstance(session, Response):
            return session
        on_site = await run_in_threadpool(desk.on_site)
        await run_in_threadpool(desk.audit, session.username, "roll_call", None, f"{len(on_site)} on site")
        response = pages.render(request, "staff_evacuation.html", session=session, on_site=on_site,
                                hostname=kiosk.hostname, now=utcnow())
        key = roll_call_key(request.cookies.get(STAFF_COOKIE, ""))
        expires = session.expires_at or utcnow()
        response.headers[ROLL_CALL_HEADER] = key
        response.headers[ROLL_CALL_EXPIRES_HEADER] = str(int(expires.timestamp() * 1000))
        # The marker (and with it the worker's copy) ends with the session, not a fixed time after this visit.
        pages.set_cookie(response, ROLL_CALL_COOKIE, key, http_only=False,
                         max_age=max(0, int((expires - utcnow()).total_seconds())))
        return response

    @router.get("/staff/sw.js", include_in_schema=False)
    async def service_worker() -> Response:
        body = (STATIC_DIR / "roll-call-sw.js").read_text(encoding="utf-8")
        return Response(body, media_type="text/javascript", headers={"Service-Worker-Allowed": "/staff/"})

    def expected_page(request: Request, session: StaffSession, values: dict[str, str] | None = None,
                      errors: FormErrors | None = None, status: int = 200, created: Visit | None = None,
                      imported: int | None = None) -> Response:
        fields, general = kiosk.error_texts(request, errors) if errors else ({}, [])
        return pages.render(request, "staff_expected.html", status=status, session=session, values=values or {},
                            errors=fields, general=general, hosts=kiosk.host_choices(), created=created,
                            imported=imported, limits=forms.LIMITS)

    @router.get("/staff/expected", include_in_schema=False)
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
        return moment.replace(tzinfo=kiosk.tz) if moment.tzinfo is None else moment

    def check_expected(values: dict[str, str]) -> tuple[Any, FormErrors]:
        details, errors = check_visitor(values, kiosk.hosts)
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
        return (details, start, end or start + timedelta(hours=kiosk.config.visit_hours)), errors

    @router.post("/staff/expected", include_in_schema=False)
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

    @router.post("/staff/expected/import", include_in_schema=False)
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

    @router.get("/staff/audit", include_in_schema=False)
    async def audit(request: Request) -> Response:
        session = need(request, "audit")
        if isinstance(session, Response):
            return session
        entries = await run_in_threadpool(desk.audit_log)
        lang = pages.lang(request)
        lines = audit_lines(entries, lambda message, args: pages.gettext(lang, message, args))
        return pages.render(request, "staff_audit.html", session=session, entries=lines, zone=kiosk.tz.key)

    return router
