"""The JSON API for pre-registration (an HR or calendar system creates expected visits), with bearer tokens."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from kiosk.forms import LIMITS, check_visitor

if TYPE_CHECKING:
    from kiosk.app import Counters
    from kiosk.auth import StaffAuth
    from kiosk.desk import Desk, Visit

bearer = HTTPBearer(auto_error=False, description="A token from `sitewarden kiosk api-token create NAME`.")


class VisitIn(BaseModel):
    """An expected visit."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=LIMITS["name"], description="Visitor's full name.")
    company: str = Field(default="", max_length=LIMITS["company"])
    host_id: str = Field(min_length=1, max_length=64, description="Host id from the site's host directory.")
    expected_start: AwareDatetime = Field(description="When the visitor is expected (with a UTC offset).")
    expected_end: AwareDatetime | None = Field(default=None, description="When the visit should end; start plus "
                                               "the site's visit length when left out.")
    email: str | None = Field(default=None, max_length=LIMITS["email"])
    phone: str | None = Field(default=None, max_length=LIMITS["phone"])
    purpose: str = Field(default="", max_length=LIMITS["purpose"])


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


def _out(visit: Visit) -> VisitOut:
    return VisitOut(id=visit.id, state=visit.state, name=visit.name, company=visit.company,  # type: ignore[arg-type]
                    host_id=visit.host_id, expected_start=visit.expected_start, expected_end=visit.expected_end,
                    checked_in_at=visit.checked_in_at, checked_out_at=visit.checked_out_at,
                    invite_code=visit.invite_code,
                    invite_path=f"/invite/{visit.invite_code}" if visit.invite_code else None)


def api_router(desk: Desk, auth: StaffAuth, counters: Counters) -> APIRouter:
    """Routes under /api/v1; every one needs a bearer token."""
    from kiosk.desk import VisitNotFound

    def client(request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> str:
        name = auth.api_client(creds.credentials) if creds and creds.scheme.lower() == "bearer" else None
        if name is None:
            counters.refuse("api_token", request)
            raise HTTPException(401, "missing or unknown bearer token", headers={"WWW-Authenticate": "Bearer"})
        return name

    Client = Annotated[str, Depends(client)]  # noqa: N806 - a type alias
    router = APIRouter(prefix="/api/v1", tags=["visits"],
                       responses={401: {"model": Problem, "description": "No or unknown bearer token."}})

    @router.post("/visits", status_code=201, response_model=VisitOut,
                 responses={422: {"model": Problem, "description": "A field is missing, too long or unknown."}})
    async def create_visit(body: VisitIn, who: Client, request: Request) -> VisitOut:
        """Pre-register a visit; the answer carries its invite code."""
        values = {"name": body.name, "company": body.company, "host_id": body.host_id, "purpose": body.purpose,
                  "email": body.email or "", "phone": body.phone or ""}
        details, errors = check_visitor(values, desk.kiosk.hosts)
        end = body.expected_end or body.expected_start + timedelta(hours=desk.kiosk.visit_hours)
        if end <= body.expected_start:
            errors.fields["expected_end"] = ("The end must be after the start.", {})
        if details is None or errors:
            counters.refuse("api_invalid", request, ", ".join(sorted(errors.fields)))
            raise HTTPException(422, [{"loc": ["body", k], "msg": m % a if a else m}
                                      for k, (m, a) in errors.fields.items()])
        visit = await run_in_threadpool(desk.pre_register, details, body.expected_start, end, f"api:{who}")
        return _out(visit)

    @router.get("/visits/expected", response_model=list[VisitOut])
    async def expected_today(who: Client) -> list[VisitOut]:
        """Visits expected today (site time) that have not arrived yet."""
        return [_out(v) for v in await run_in_threadpool(desk.expected_today)]

    @router.get("/visits/{visit_id}", response_model=VisitOut,
                responses={404: {"model": Problem, "description": "No such visit."}})
    async def get_visit(visit_id: str, who: Client) -> VisitOut:
        """One visit."""
        try:
            return _out(await run_in_threadpool(desk.get, visit_id))
        except VisitNotFound:
            raise HTTPException(404, "no such visit") from None

    @router.delete("/visits/{visit_id}", status_code=204, response_class=Response,
                   responses={404: {"model": Problem, "description": "No expected visit with this id."}})
    async def cancel_visit(visit_id: str, who: Client) -> Response:
        """Cancel an expected visit."""
        try:
            await run_in_threadpool(desk.cancel, visit_id, f"api:{who}")
        except VisitNotFound:
            raise HTTPException(404, "no expected visit with this id") from None
        return Response(status_code=204)

    @router.get("/hosts")
    async def list_hosts(who: Client) -> list[dict[str, str]]:
        """The host directory."""
        return [{"id": hid, "name": h.name, "department": h.department} for hid, h in desk.kiosk.hosts.items()]

    return router
