"""The visitor pages at reception: check in (walk-in or invited), house rules, photo, badge, check out."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from kiosk import forms
from kiosk.desk import Visit, VisitNotFound
from kiosk.forms import MSG, FormErrors, check_visitor, data_url, unknown_fields
from kiosk.i18n import LANGUAGES
from kiosk.text import normalize_name
from kiosk.web import CSRF_FIELD, LANG_COOKIE, VISITOR_FIELDS

# The check-in form: the visitor's fields and what was typed in the host search box.
CHECKIN_FIELDS = VISITOR_FIELDS | {"host_query"}

if TYPE_CHECKING:
    from kiosk.app import Kiosk


def visitor_router(kiosk: Kiosk) -> APIRouter:
    """The visitor pages, in the order they are matched (none of them in the API schema)."""
    router = APIRouter()
    pages, desk, counters, checkin_limit = kiosk.pages, kiosk.desk, kiosk.counters, kiosk.checkin_limit

    @router.get("/", include_in_schema=False)
    async def welcome(request: Request) -> Response:
        return pages.render(request, "welcome.html")

    @router.get("/lang/{code}", include_in_schema=False)
    async def switch_language(request: Request, code: str, next: str = "/") -> Response:
        response = pages.redirect(next)
        if code in LANGUAGES:
            pages.set_cookie(response, LANG_COOKIE, code, max_age=3600 * 24 * 365)
        return response

    @router.get("/hosts/search", include_in_schema=False)
    async def host_search(q: str = "") -> JSONResponse:
        needle = normalize_name(q[:60])
        found = [{"id": hid, "name": name, "department": dept} for hid, name, dept in kiosk.host_choices()
                 if needle and needle in normalize_name(name)][:10]
        return JSONResponse(found)

    def host_by_name(typed: str) -> str | None:
        """The host whose name was typed in full (case, accents and spacing aside) without tapping it."""
        needle = normalize_name(typed[:100])
        found = [hid for hid, name, dept in kiosk.host_choices()
                 if needle and needle in (normalize_name(name), normalize_name(f"{name} ({dept})"))]
        return found[0] if len(found) == 1 else None

    def checkin_page(request: Request, values: dict[str, str] | None = None, errors: FormErrors | None = None,
                     status: int = 200) -> Response:
        fields, general = kiosk.error_texts(request, errors) if errors else ({}, [])
        return pages.render(request, "checkin.html", status=status, values=values or {}, errors=fields,
                            general=general, hosts=kiosk.host_choices(), limits=forms.LIMITS,
                            retention_days=kiosk.config.retention_days)

    @router.get("/checkin", include_in_schema=False)
    async def checkin_form(request: Request) -> Response:
        return checkin_page(request)

    @router.post("/checkin", include_in_schema=False)
    async def checkin_submit(request: Request) -> Response:
        form = await kiosk.read_form(request)
        values = {k: v for k, v in form.items() if isinstance(v, str) and k != CSRF_FIELD}
        if not values.get("host_id") and (typed := host_by_name(values.get("host_query", ""))):
            values["host_id"] = typed
        shown = {k: v[:200] for k, v in values.items() if k in CHECKIN_FIELDS}
        if (problem := kiosk.csrf_problem(request, form)) is not None:
            return checkin_page(request, shown, FormErrors({}, [(MSG[problem], {})]), status=403)
        client = f"checkin:{kiosk.client_of(request)}"
        if checkin_limit.blocked(client):
            counters.refuse("rate_limited", request)
            return checkin_page(request, shown, FormErrors({}, [(MSG["rate_limited"], {})]), status=429)
        extra = unknown_fields(form, CHECKIN_FIELDS)
        if extra:
            counters.refuse("unknown_fields", request, ", ".join(sorted(set(form) - CHECKIN_FIELDS))[:200])
            return checkin_page(request, shown, extra, status=400)
        details, errors = check_visitor(values, kiosk.hosts)
        if details is None:
            counters.refuse("invalid_form", request, ", ".join(sorted(errors.fields)))
            return checkin_page(request, shown, errors, status=400)
        checkin_limit.hit(client)
        started = await run_in_threadpool(desk.start_walk_in, details, pages.lang(request))
        if started.outcome == "held":
            return pages.redirect("/wait")
        return pages.redirect(f"/v/{started.flow_token}/next")

    @router.get("/wait", include_in_schema=False)
    async def wait(request: Request) -> Response:
        return pages.render(request, "wait.html")

    async def flow_visit(token: str, request: Request, states: tuple[str, ...] = ("in_progress",)) -> Visit | None:
        try:
            return await run_in_threadpool(desk.flow_visit, token, states)
        except VisitNotFound:
            counters.refuse("flow_expired", request)
            return None

    def expired(request: Request) -> Response:
        return pages.render(request, "message.html", status=404, title_msg=kiosk.msg(request, "flow_expired"),
                            back="/")

    @router.get("/v/{token}/next", include_in_schema=False)
    async def flow_next(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        needs = await run_in_threadpool(desk.needs_rules, visit)
        return pages.redirect(f"/v/{token}/rules" if needs else f"/v/{token}/photo")

    def rules_page(request: Request, token: str, visit: Visit, error: str | None = None,
                   status: int = 200, accepted: bool = False) -> Response:
        lang, rules = pages.lang(request), kiosk.config.house_rules
        return pages.render(request, "rules.html", status=status, token=token, visit=visit,
                            rules_text=rules.text[lang], rules_version=rules.version, error=error, accepted=accepted)

    @router.get("/v/{token}/rules", include_in_schema=False)
    async def rules_form(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        return expired(request) if visit is None else rules_page(request, token, visit)

    @router.post("/v/{token}/rules", include_in_schema=False)
    async def rules_submit(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        form = await kiosk.read_form(request)
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return rules_page(request, token, visit, refused, 403)
        extra = unknown_fields(form, {"signature", "accept", CSRF_FIELD})
        if extra:
            counters.refuse("unknown_fields", request)
            return rules_page(request, token, visit, kiosk.error_texts(request, extra)[1][0], 400)
        if form.get("accept") != "yes":
            return rules_page(request, token, visit, kiosk.msg(request, "accept_missing"), 400)
        raw = form.get("signature")
        if not raw:  # the tick stays: the visitor only has to sign
            return rules_page(request, token, visit, kiosk.msg(request, "signature_missing"), 400, accepted=True)
        png = data_url(raw if isinstance(raw, str) else "", "image/png", forms.MAX_SIGNATURE_BYTES)
        if png is None:
            counters.refuse("signature_bad", request)
            return rules_page(request, token, visit, kiosk.msg(request, "signature_bad"), 400, accepted=True)
        await run_in_threadpool(desk.sign_rules, token, png)
        return pages.redirect(f"/v/{token}/photo")

    @router.get("/v/{token}/photo", include_in_schema=False)
    async def photo_form(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        if await run_in_threadpool(desk.needs_rules, visit):
            return pages.redirect(f"/v/{token}/rules")
        return pages.render(request, "photo.html", token=token, error=None)

    @router.post("/v/{token}/photo", include_in_schema=False)
    async def photo_submit(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request)
        if visit is None:
            return expired(request)
        form = await kiosk.read_form(request)
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return pages.render(request, "photo.html", status=403, token=token, error=refused)
        extra = unknown_fields(form, {"photo", "skip", CSRF_FIELD})
        if extra:
            counters.refuse("unknown_fields", request)
            return pages.render(request, "photo.html", status=400, token=token,
                                error=kiosk.error_texts(request, extra)[1][0])
        jpeg = None
        raw = form.get("photo")
        if raw and form.get("skip") != "yes":
            jpeg = data_url(raw if isinstance(raw, str) else "", "image/jpeg", forms.MAX_PHOTO_BYTES)
            if jpeg is None:
                counters.refuse("photo_bad", request)
                return pages.render(request, "photo.html", status=400, token=token,
                                    error=kiosk.msg(request, "photo_bad"))
        try:
            await run_in_threadpool(desk.complete, token, jpeg)
        except VisitNotFound:
            return pages.redirect(f"/v/{token}/next")
        return pages.redirect(f"/v/{token}/badge")

    @router.get("/v/{token}/badge", include_in_schema=False)
    async def badge(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request, states=("on_site",))
        if visit is None:
            return expired(request)
        return pages.render(request, "badge.html", token=token, **kiosk.badge_context(visit))

    @router.post("/v/{token}/done", include_in_schema=False)
    async def badge_done(request: Request, token: str) -> Response:
        """The visitor is done with the badge page: its flow ends, so Back or a replay shows nothing of them."""
        form = await kiosk.read_form(request)
        if kiosk.csrf_refusal(request, form) is None:
            await run_in_threadpool(desk.end_flow, token)
        return pages.redirect(pages.fresh_start)  # the next visitor starts in the site's language

    @router.get("/v/{token}/photo.jpg", include_in_schema=False)
    async def badge_photo(request: Request, token: str) -> Response:
        visit = await flow_visit(token, request, states=("on_site",))
        data = await run_in_threadpool(desk.photo, visit.id) if visit else None
        if data is None:
            return Response(status_code=404)
        return Response(data, media_type="image/jpeg")

    def invite_page(request: Request, error: str | None = None, status: int = 200, code: str = "") -> Response:
        return pages.render(request, "invite.html", status=status, error=error, code=code)

    @router.get("/invite", include_in_schema=False)
    async def invite_form(request: Request) -> Response:
        return invite_page(request)

    @router.post("/invite", include_in_schema=False)
    async def invite_lookup(request: Request) -> Response:
        form = await kiosk.read_form(request)
        code = str(form.get("code", ""))[:40]
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return invite_page(request, refused, 403, code)
        return pages.redirect(f"/invite/{code.strip() or '-'}")

    @router.get("/invite/{code}", include_in_schema=False)
    async def invite_confirm(request: Request, code: str) -> Response:
        client = f"invite:{kiosk.client_of(request)}"
        if checkin_limit.blocked(client):
            counters.refuse("rate_limited", request)
            return invite_page(request, kiosk.msg(request, "rate_limited"), 429, code[:40])
        try:
            visit = await run_in_threadpool(desk.find_invite, code)
        except VisitNotFound:
            checkin_limit.hit(client)  # guessing codes costs tries
            counters.refuse("invite_unknown", request)
            return invite_page(request, kiosk.msg(request, "invite_unknown"), 404, code[:40])
        return pages.render(request, "invite_confirm.html", visit=visit, code=code,
                            host_name=kiosk.hostname(visit.host_id))

    @router.post("/invite/{code}", include_in_schema=False)
    async def invite_start(request: Request, code: str) -> Response:
        form = await kiosk.read_form(request)
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return invite_page(request, refused, 403, code[:40])
        try:
            started = await run_in_threadpool(desk.start_invited, code, pages.lang(request))
        except VisitNotFound:
            counters.refuse("invite_unknown", request)
            return invite_page(request, kiosk.msg(request, "invite_unknown"), 404, code[:40])
        if started.outcome == "held":
            return pages.redirect("/wait")
        return pages.redirect(f"/v/{started.flow_token}/next")

    def checkout_page(request: Request, error: str | None = None, status: int = 200) -> Response:
        return pages.render(request, "checkout.html", status=status, error=error)

    @router.get("/checkout", include_in_schema=False)
    async def checkout_form(request: Request) -> Response:
        return checkout_page(request)

    @router.post("/checkout", include_in_schema=False)
    async def checkout_submit(request: Request) -> Response:
        form = await kiosk.read_form(request)
        if (refused := kiosk.csrf_refusal(request, form)) is not None:
            return checkout_page(request, refused, 403)
        client = f"checkout:{kiosk.client_of(request)}"
        if checkin_limit.blocked(client):
            counters.refuse("rate_limited", request)
            return checkout_page(request, kiosk.msg(request, "rate_limited"), 429)
        try:
            visit = await run_in_threadpool(desk.check_out_code, str(form.get("code", ""))[:40])
        except VisitNotFound:
            checkin_limit.hit(client)
            counters.refuse("code_unknown", request)
            return checkout_page(request, kiosk.msg(request, "code_unknown"), 404)
        return pages.render(request, "goodbye.html", visit=visit)

    return router
