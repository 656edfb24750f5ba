"""The JSON API for pre-registration (an HR or calendar system creates expected visits), with scoped bearer tokens.

A token sees and changes only the visits its own client pre-registered: never walk-ins, never visits staff or
another client made (those answer 404, as if they did not exist), and it needs the scope each route names.

No `from __future__ import annotations` here: FastAPI reads the route annotations, which name local types.
"""

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, create_model
from starlette.concurrency import run_in_threadpool

from kiosk.auth import ApiClient
from kiosk.forms import EMAIL_PATTERN, LIMITS, NAME_PATTERN, PHONE_PATTERN, check_visitor

if TYPE_CHECKING:
    from kiosk.app import Counters
    from kiosk.auth import StaffAuth
    from kiosk.desk import Desk, Visit

bearer = HTTPBearer(auto_error=False, description="A token from `sitewarden kiosk api-token create NAME --scope "
                    "preregister[,read-own,cancel-own]`. A token reaches only the visits it pre-registered.")


MAX_VISIT_MINUTES = 24 * 60


def _text_only(value: object) -> object:
    """A time must come as text: pydantic alone would read a number as seconds since 1970."""
    if not isinstance(value, str):
        raise ValueError("give the time as RFC 3339 text, e.g. 2026-11-21T14:00:00+01:00")
    return value


class VisitIn(BaseModel):
    """An expected visit. `host_id` is one of the site's hosts (the served document lists them)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=LIMITS["name"], pattern=NAME_PATTERN,
                      description="Visitor's full name.")
    company: str = Field(default="", max_length=LIMITS["company"])
    host_id: str = Field(min_length=1, max_length=64, description="Host id from the site's host directory.")
    expected_start: Annotated[AwareDatetime, BeforeValidator(_text_only)] = Field(
        description="When the visitor is expected: RFC 3339 text with a UTC offset.")
    duration_minutes: int | None = Field(default=None, ge=1, le=MAX_VISIT_MINUTES, description="Expected length "
                                         "of the visit; the site's `visit_hours` when left out.")
    email: str | None = Field(default=None, max_length=LIMITS["email"], pattern=EMAIL_PATTERN)
    phone: str | None = Field(default=None, max_length=LIMITS["phone"], pattern=PHONE_PATTERN)
    purpose: str = Field(default="", max_length=LIMITS["purpose"])


def _visit_in_for(hosts: list[str]) -> type[VisitIn]:
    """VisitIn with `host_id` limited to this site's hosts, so the OpenAPI document names them."""
    if not hosts:
        return VisitIn
    return create_model("VisitIn", __base__=VisitIn,
                        host_id=(Literal[tuple(hosts)], Field(description="Host id from the site's host directory.")))


class VisitOut(BaseModel):
    """A visit as the API shows it."""

    id: str
    state: Literal["expected", "in_progress", "held", "on_site", "checked_out", "cancelled", "refused", "abandoned"]
    name: str
    company: str
    host_id: str
    expected_start: datetime | None
    expected_end: datetime | None
    checked_in_at: datetime | None
    checked_out_at: datetime | None
    invite_code: str | None
    invite_path: str | None = Field(description="Path on the kiosk that opens the invite (for a QR code).")


class Problem(BaseModel):
    """What was wrong with a request."""

    detail: str | list[dict[str, object]]


def _out(visit: "Visit") -> VisitOut:
    return VisitOut(id=visit.id, state=visit.state, name=visit.name, company=visit.company,  # type: ignore[arg-type]
                    host_id=visit.host_id, expected_start=visit.expected_start, expected_end=visit.expected_end,
                    checked_in_at=visit.checked_in_at, checked_out_at=visit.checked_out_at,
                    invite_code=visit.invite_code,
                    invite_path=f"/invite/{visit.invite_code}" if visit.invite_code else None)


def _owned(desk: "Desk", client: ApiClient, visit_id: str | None = None) -> set[str]:
    """Ids of the visits this client pre-registered (only `visit_id`'s, when given)."""
    sql, args = "SELECT id FROM visits WHERE created_by = ?", [client.actor]
    if visit_id is not None:
        sql, args = sql + " AND id = ?", [*args, visit_id]
    with desk.producer.lock:
        return {r[0] for r in desk.db.execute(sql, args).fetchall()}


def api_router(desk: "Desk", auth: "StaffAuth", counters: "Counters") -> APIRouter:
    """Routes under /api/v1; every one needs a bearer token with the route's scope."""
    from kiosk.desk import VisitNotFound

    def client(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
               ) -> ApiClient:
        found = auth.api_client(creds.credentials) if creds and creds.scheme.lower() == "bearer" else None
        if found is None:
            counters.refuse("api_token", request)
            raise HTTPException(401, "missing or unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        return found

    def scoped(scope: str) -> Any:
        """A dependency that lets through only tokens holding `scope`."""

        def check(request: Request, found: Annotated[ApiClient, Depends(client)]) -> ApiClient:
            if scope not in found.scopes:
                counters.refuse("api_scope", request, f"{found.name} lacks {scope}")
                raise HTTPException(403, f"this token lacks the scope {scope!r}")
            return found
        return Depends(check)

    Preregister = Annotated[ApiClient, scoped("preregister")]  # noqa: N806 - type aliases
    ReadOwn = Annotated[ApiClient, scoped("read-own")]  # noqa: N806
    CancelOwn = Annotated[ApiClient, scoped("cancel-own")]  # noqa: N806
    forbidden = {403: {"model": Problem, "description": "The token lacks this route's scope."}}
    router = APIRouter(prefix="/api/v1", tags=["visits"],
                       responses={401: {"model": Problem, "description": "No or unknown bearer token."},
                                  413: {"model": Problem, "description": "The request is larger than 3 MiB."}})

    body_model = _visit_in_for(sorted(desk.kiosk.hosts))

    @router.post("/visits", status_code=201, response_model=VisitOut,
                 responses={**forbidden, 400: {"model": Problem, "description": "The body is not JSON."},
                            422: {"model": Problem, "description": "A field is missing, too long, malformed or "
                                  "unknown."}})
    async def create_visit(body: body_model, who: Preregister, request: Request) -> VisitOut:  # type: ignore[valid-type]
        """Pre-register a visit; the answer carries its invite code. Scope `preregister`."""
        values = {"name": body.name, "company": body.company, "host_id": body.host_id, "purpose": body.purpose,
                  "email": body.email or "", "phone": body.phone or ""}
        details, errors = check_visitor(values, desk.kiosk.hosts)
        if details is None:
            counters.refuse("api_invalid", request, ", ".join(sorted(errors.fields)))
            raise HTTPException(422, [{"loc": ["body", k], "msg": m % a if a else m}
                                      for k, (m, a) in errors.fields.items()])
        minutes = body.duration_minutes or round(desk.kiosk.visit_hours * 60)
        visit = await run_in_threadpool(desk.pre_register, details, body.expected_start,
                                        body.expected_start + timedelta(minutes=minutes), who.actor)
        return _out(visit)

    @router.get("/expected-visits", response_model=list[VisitOut], responses=forbidden)
    async def expected_today(who: ReadOwn) -> list[VisitOut]:
        """Visits this client pre-registered that are expected today (site time) and have not arrived yet.
        Scope `read-own`."""
        visits, mine = await run_in_threadpool(lambda: (desk.expected_today(), _owned(desk, who)))
        return [_out(v) for v in visits if v.id in mine]

    @router.get("/visits/{visit_id}", response_model=VisitOut,
                responses={**forbidden, 404: {"model": Problem, "description": "No visit this client made."}})
    async def get_visit(visit_id: str, who: ReadOwn) -> VisitOut:
        """One visit this client pre-registered. Scope `read-own`."""
        try:
            if not await run_in_threadpool(_owned, desk, who, visit_id):
                raise VisitNotFound(visit_id)
            return _out(await run_in_threadpool(desk.get, visit_id))
        except VisitNotFound:
            raise HTTPException(404, "no such visit") from None

    @router.delete("/visits/{visit_id}", status_code=204, response_class=Response,
                   responses={**forbidden,
                              404: {"model": Problem, "description": "No expected visit this client made."}})
    async def cancel_visit(visit_id: str, who: CancelOwn) -> Response:
        """Cancel an expected visit this client pre-registered. Scope `cancel-own`."""
        try:
            if not await run_in_threadpool(_owned, desk, who, visit_id):
                raise VisitNotFound(visit_id)
            await run_in_threadpool(desk.cancel, visit_id, who.actor)
        except VisitNotFound:
            raise HTTPException(404, "no expected visit with this id") from None
        return Response(status_code=204)

    @router.get("/hosts", responses=forbidden)
    async def list_hosts(who: Preregister) -> list[dict[str, str]]:
        """The host directory. Scope `preregister`."""
        return [{"id": hid, "name": h.name, "department": h.department} for hid, h in desk.kiosk.hosts.items()]

    return router
