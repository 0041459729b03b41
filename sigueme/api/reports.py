"""Reports (SeguriChat) over HTTP: file one with its evidence, read them, work them;
and the channels that route them to dispatchers and monitors.

- ``POST /v1/reports``: any user files a report, as ``multipart/form-data`` (fields and
  up to five ``media`` files) or as ``application/json`` (no files). It enters the
  police queue at once as an alert of kind ``report``. A traveller attaches a voice note
  or a photo to their trip in progress with ``trip_id``.
- ``GET /v1/reports``, ``GET /v1/reports/{id}``: the reports the caller may see
  (:mod:`sigueme.store.reports`), never who made them; reads are audited.
- ``GET /v1/reports/{id}/media/{media_id}``: an evidence file, after the access check:
  the original for the dispatchers and admins the report is routed to, the copy without
  location metadata for everyone else who may see the report. Audited.
- ``PATCH /v1/reports/{id}``, ``POST .../reveal``, ``POST .../refer-fede``: what
  dispatchers do (category and channel, the audited reveal of the reporter, the referral
  of an electoral crime to FEDE Morelos).
- ``/v1/channels``: admins make channels and name their members.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData, UploadFile
from starlette.requests import HTTPConnection

from sigueme.access import Principal
from sigueme.alerts.lifecycle import Action
from sigueme.api.deps import AdminDep, SessionDep, UserDep, require_role
from sigueme.api.errors import invalid_body
from sigueme.api.fixes_in import wake_relay
from sigueme.api.schemas import RefusalOut
from sigueme.api.trips import INVALID, UNAUTHORIZED, Responses, _err
from sigueme.errors import Invalid, NotFound
from sigueme.reports.categories import ReportCategory
from sigueme.reports.media import (
    MAX_EVIDENCE_BYTES,
    Evidence,
    MediaProblem,
    MediaRejected,
    accept_evidence,
)
from sigueme.reports.storage import (
    EvidenceCorrupt,
    EvidenceNotFound,
    EvidenceStore,
    EvidenceStoreError,
)
from sigueme.reports.whatsapp import GraphClient
from sigueme.services import reports as service
from sigueme.settings import Settings
from sigueme.store import reports as store
from sigueme.store.audit import record_read
from sigueme.store.models import (
    AlertHistory,
    Report,
    ReportChannel,
    ReportMedia,
    Role,
    User,
    utcnow,
)
from sigueme.store.users import get_user

router = APIRouter(prefix="/v1", tags=["reports"])

DispatcherDep = Annotated[Principal, Depends(require_role(Role.DISPATCHER, Role.ADMIN))]
# Bounded by the columns they are compared with (PostgreSQL refuses a parameter out of
# their range, which would be a 500): reports' ids are BIGINT, channels' and media's INTEGER.
ReportId = Annotated[int, Path(ge=1, le=2**62, description="The report's id.")]
ChannelId = Annotated[int, Path(ge=1, le=2**31 - 1, description="The channel's id.")]

MAX_LIST: Final = 200
FUTURE_SLACK: Final = timedelta(minutes=10)
"""How far ahead of the server's clock ``occurred_at`` may be (phones' clocks drift)."""
UNDECLARED: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})
"""Declared types that say nothing: the type is read from the content."""
PROBLEM_STATUS: Final = {
    MediaProblem.TOO_BIG: 413,
    MediaProblem.NOT_ALLOWED: 415,
    MediaProblem.MISLABELLED: 422,
    MediaProblem.EMPTY: 422,
}

NOT_FOUND_REPORT: Responses = {404: _err("No such report, or not one you may see.")}
DISPATCHERS: Responses = {
    403: _err("Only the dispatchers the report is routed to, and admins, work reports.")
}
MEDIA_REFUSED: Responses = {
    413: _err(
        "The body, or an evidence file, is too big (images 5 MiB, audio and video 16 MiB).",
        RefusalOut,
    ),
    415: _err(
        "Not multipart, a form or JSON; or an evidence file is not an accepted type (JPEG, "
        "PNG, AAC, AMR, MP3, M4A, OGG, MP4, 3GP): then `loc` names the file.",
        RefusalOut,
    ),
}

AUDIT_READ: Final = "report.read"
AUDIT_LIST: Final = "report.list"
AUDIT_MEDIA: Final = "report.media"
AUDIT_REVEAL: Final = "report.reveal"


def audit_key(report_id: int) -> str:
    """What the audit log's ``trip_id`` column holds for a report."""
    return f"report:{report_id}"


# -- what the app holds for reports ------------------------------------------------------------


@asynccontextmanager
async def report_services(app: FastAPI) -> AsyncIterator[None]:
    """The evidence store (``app.state.evidence_store``) and, when WhatsApp is
    configured (app secret and access token), the Graph API client and the WhatsApp
    inbox (``app.state.whatsapp``), for the app's lifetime."""
    settings: Settings = app.state.settings
    evidence = store.evidence_store_for(settings)
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(30.0, connect=10.0), follow_redirects=False, trust_env=False
    )
    app.state.evidence_store = evidence
    app.state.whatsapp = None
    try:
        secret, token = settings.whatsapp_app_secret, settings.whatsapp_access_token
        if secret and secret.get_secret_value() and token and token.get_secret_value():
            graph = GraphClient(
                settings.whatsapp_graph_url,
                token.get_secret_value(),
                settings.whatsapp_api_version,
                http,
            )
            app.state.whatsapp = service.WhatsAppInbox(
                app.state.sessions, evidence, graph, window_s=settings.report_window_s
            )
        yield
    finally:
        app.state.whatsapp = None
        app.state.evidence_store = None
        await http.aclose()
        await evidence.aclose()


def get_evidence_store(conn: HTTPConnection) -> EvidenceStore:
    evidence: EvidenceStore | None = getattr(conn.app.state, "evidence_store", None)
    if evidence is None:
        raise HTTPException(503, "the evidence store is not open", {"Retry-After": "5"})
    return evidence


def _unavailable(exc: EvidenceStoreError) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})


EvidenceDep = Annotated[EvidenceStore, Depends(get_evidence_store)]


# -- bodies ------------------------------------------------------------------------------------


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReportIn(_In):
    """A report's fields (the same as multipart form fields or as JSON)."""

    text: str = Field("", max_length=service.MAX_TEXT, description="What happened.")
    category: ReportCategory = ReportCategory.OTHER
    lat: float | None = Field(None, ge=-90, le=90, allow_inf_nan=False)
    lon: float | None = Field(None, ge=-180, le=180, allow_inf_nan=False)
    position_source: Literal["phone", "map"] = Field(
        "phone", description="Where lat/lon come from: the phone's position or a map pick."
    )
    place: str | None = Field(
        None, max_length=service.MAX_PLACE, description="The place in words, without lat/lon."
    )
    occurred_at: AwareDatetime | None = Field(None, description="When it happened (default now).")
    channel: str | None = Field(None, min_length=1, max_length=100, description="A channel name.")
    trip_id: str | None = Field(
        None, min_length=1, max_length=36, description="Your trip in progress."
    )
    anonymous: bool = Field(False, description="Keep no identity of the reporter at all.")


class ReportPatch(_In):
    category: ReportCategory | None = None
    channel: str | None = Field(
        None, min_length=1, max_length=100, description="A channel name; null: general queue."
    )


class RevealIn(_In):
    reason: str = Field(min_length=3, max_length=500, description="Why (kept in the audit).")


class FedeIn(_In):
    note: str | None = Field(None, max_length=2000)


class ChannelIn(_In):
    name: str = Field(min_length=1, max_length=100)
    kind: store.ChannelKind
    description: str | None = Field(None, max_length=300)


_FORM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        **{
            name: {"type": "string"}
            for name in (
                "text",
                "category",
                "lat",
                "lon",
                "position_source",
                "place",
                "occurred_at",
                "channel",
                "trip_id",
                "anonymous",
            )
        },
        "media": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "maxItems": service.MAX_MEDIA,
        },
    },
}


# -- filing a report ---------------------------------------------------------------------------


def _clean(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip()
    return value or None


def _validated(data: dict[str, Any]) -> ReportIn:
    try:
        return ReportIn.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        ) from None


def _from_form(form: FormData) -> tuple[ReportIn, list[UploadFile]]:
    fields: dict[str, Any] = {}
    files: list[UploadFile] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            if key != "media":
                raise Invalid(key, "files go in the field media")
            files.append(value)
        elif key == "media":
            raise Invalid("media", "must be a file")
        elif key in fields:
            raise Invalid(key, "given twice")
        elif "\x00" in value:
            # Files are binary, so a multipart body as a whole may hold NUL bytes: its
            # text fields are checked here.
            raise Invalid(key, "NUL characters are not accepted")
        elif value.strip():
            fields[key] = value
    if len(files) > service.MAX_MEDIA:
        raise Invalid("media", f"at most {service.MAX_MEDIA} files per report")
    return _validated(fields), files


async def _accept(files: list[UploadFile]) -> list[Evidence]:
    accepted = []
    for i, upload in enumerate(files):
        field = f"media[{i}]"
        if upload.size is not None and upload.size > MAX_EVIDENCE_BYTES:
            raise MediaRejected(
                field,
                MediaProblem.TOO_BIG,
                f"the file has {upload.size} bytes; at most {MAX_EVIDENCE_BYTES} are accepted",
            )
        data = await upload.read(MAX_EVIDENCE_BYTES + 1)
        declared = (upload.content_type or "").split(";", 1)[0].strip().lower()
        accepted.append(
            await asyncio.to_thread(
                accept_evidence, data, None if declared in UNDECLARED else declared, field=field
            )
        )
    return accepted


def _refused(exc: MediaRejected) -> JSONResponse:
    return JSONResponse(
        invalid_body(exc.field, exc.reason), status_code=PROBLEM_STATUS.get(exc.problem, 422)
    )


@router.post(
    "/reports",
    status_code=201,
    summary="File a report (multipart with evidence files, or JSON)",
    responses={
        **UNAUTHORIZED,
        **INVALID,
        **MEDIA_REFUSED,
        404: _err("No such trip, or not yours."),
        409: _err("The trip has ended."),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": _FORM_SCHEMA},
                "application/json": {"schema": ReportIn.model_json_schema()},
            },
        }
    },
)
async def create_report(
    request: Request, principal: UserDep, evidence_store: EvidenceDep
) -> Response:
    """The report enters the police queue at once (an alert of kind ``report``, severity
    from the category). It needs a place: ``lat`` and ``lon``, or ``place`` in words; a
    photo's own position counts, and so does the last position of ``trip_id``. Files are
    checked from their content (images 5 MiB; audio and video 16 MiB) and kept as
    evidence with their SHA-256; when any file is refused, nothing is kept. Answers the
    report's ``id`` and ``folio``."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    form: FormData | None = None
    try:
        if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
            form = await request.form(
                max_files=service.MAX_MEDIA + 1, max_fields=20, max_part_size=64 * 1024
            )
            body, uploads = _from_form(form)
        elif content_type == "application/json" or content_type.endswith("+json"):
            try:
                data = await request.json()
            except ValueError:
                raise Invalid("body", "is not JSON") from None
            if not isinstance(data, dict):
                raise Invalid("body", "must be a JSON object")
            body, uploads = _validated(data), []
        else:
            return JSONResponse(
                {"detail": "send multipart/form-data (with files), a form or application/json"},
                status_code=415,
            )
        new = _new_report(body)
        files = await _accept(uploads)
    except MediaRejected as exc:
        return _refused(exc)
    finally:
        if form is not None:
            await form.close()
    if not new.text and not files:
        raise Invalid("text", "say what happened: text, or at least one file")
    try:
        submitted = await service.submit_report(
            request.app.state.sessions, evidence_store, principal, new, files, now=utcnow()
        )
    except EvidenceStoreError as exc:
        return _unavailable(exc)
    wake_relay(request.app.state, [submitted.change])
    return JSONResponse(
        {
            "id": submitted.report_id,
            "folio": submitted.folio,
            "status": store.ReportStatus.SUBMITTED.value,
            "alert_id": submitted.alert_id,
            "position_source": submitted.position_source,
            "media": [
                {"sha256": f.sha256, "size": f.size, "type": f.media_type.mime} for f in files
            ],
        },
        status_code=201,
    )


def _new_report(body: ReportIn) -> service.NewReport:
    if (body.lat is None) != (body.lon is None):
        raise Invalid("lat" if body.lat is None else "lon", "give both lat and lon, or neither")
    now = datetime.now(UTC)
    if body.occurred_at is not None and body.occurred_at > now + FUTURE_SLACK:
        raise Invalid("occurred_at", "is in the future")
    return service.NewReport(
        text=(body.text or "").strip().replace("\x00", ""),
        category=body.category,
        lon=body.lon,
        lat=body.lat,
        place=_clean(body.place),
        position_source=body.position_source,
        occurred_at=body.occurred_at.astimezone(UTC) if body.occurred_at else None,
        channel=_clean(body.channel),
        trip_id=_clean(body.trip_id),
        anonymous=body.anonymous,
    )


# -- reading reports -----------------------------------------------------------------------------


def _iso(when: datetime | None) -> str | None:
    return None if when is None else when.astimezone(UTC).isoformat().replace("+00:00", "Z")


async def _report_body(
    session: AsyncSession, who: store.ReportViewer, report: Report, *, full: bool
) -> dict[str, Any]:
    """A report as ``who`` may see it: never who made it; the trip, the alert's history
    and the evidence originals only for the dispatchers and admins it is routed to."""
    police = who.may_work(report)
    category = service.category_of(report)
    channel = await session.get(ReportChannel, report.channel_id) if report.channel_id else None
    alert = await store.alert_of(session, report.id)
    history = []
    fede = None
    if alert is not None:
        query = (
            select(AlertHistory, User.name)
            .outerjoin(User, User.id == AlertHistory.actor_id)
            .where(AlertHistory.alert_id == alert.id)
            .order_by(AlertHistory.at, AlertHistory.id)
        )
        for entry, actor in (await session.execute(query)).all():
            if entry.action == Action.REFERRED_FEDE.value and fede is None:
                fede = {"at": _iso(entry.at), "note": entry.note if police else None}
            if police:
                history.append(
                    {"at": _iso(entry.at), "action": entry.action, "by": actor, "note": entry.note}
                )
    body: dict[str, Any] = {
        "id": report.id,
        "folio": report.folio,
        "status": report.status,
        "category": report.category,
        "category_label": category.label_es,
        "electoral": category.electoral_crime,
        "legal_basis": category.legal_basis_es,
        "text": report.text,
        "place": report.place,
        "position": None
        if report.lon is None or report.lat is None
        else {"type": "Point", "coordinates": [report.lon, report.lat]},
        "position_source": report.position_source,
        "occurred_at": _iso(report.occurred_at),
        "received_at": _iso(report.first_at),
        "last_message_at": _iso(report.last_message_at),
        "channel": channel.name if channel is not None else None,
        "source": report.source,
        "anonymous": report.anonymous,
        "identity": "anonymous" if report.anonymous else "protected",
        "trip_id": report.trip_id if police or _own(who, report) else None,
        "alert": None
        if alert is None
        else {
            "id": alert.id,
            "status": alert.status,
            "severity": alert.severity,
            "opened_at": _iso(alert.opened_at),
        },
        "referred_fede": fede,
    }
    if full:
        rows = (
            await session.scalars(
                select(ReportMedia)
                .where(ReportMedia.report_id == report.id)
                .order_by(ReportMedia.id)
            )
        ).all()
        body["media"] = [_media_body(report, m, police=police) for m in rows]
        if police:
            body["history"] = history
    return body


def _own(who: store.ReportViewer, report: Report) -> bool:
    return report.reporter_user_id is not None and report.reporter_user_id == who.principal.user_id


def _media_body(report: Report, media: ReportMedia, *, police: bool) -> dict[str, Any]:
    available = police or media.redacted_key is not None
    return {
        "id": media.id,
        "kind": media.kind,
        "content_type": media.content_type,
        "size": media.size,
        "sha256": media.sha256,
        "redacted_sha256": media.redacted_sha256,
        "served": ("original" if police else "redacted") if available else None,
        "url": f"/v1/reports/{report.id}/media/{media.id}" if available else None,
        "position": None
        if not police or media.lon is None or media.lat is None
        else {"type": "Point", "coordinates": [media.lon, media.lat]},
        "received_at": _iso(media.created_at),
    }


@router.get(
    "/reports",
    summary="The reports you may see, newest first",
    responses={**UNAUTHORIZED, **INVALID},
)
async def list_reports(
    principal: UserDep,
    session: SessionDep,
    category: Annotated[list[ReportCategory] | None, Query()] = None,
    channel: Annotated[str | None, Query(max_length=100)] = None,
    source: Annotated[Literal["api", "whatsapp"] | None, Query()] = None,
    before: Annotated[
        int | None, Query(ge=1, le=2**62, description="Only reports with a smaller id.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> dict[str, Any]:
    """Admins see every report; dispatchers those of their channels and of none (the
    general queue); monitors those of their channels; everyone the reports they filed.
    Never who made them. The read is audited."""
    who = await store.viewer(session, principal)
    query = select(Report).where(who.clause())
    if category:
        query = query.where(Report.category.in_([c.value for c in category]))
    if channel is not None:
        found = await store.channel_by_name(session, channel)
        query = query.where(Report.channel_id == (found.id if found is not None else -1))
    if source is not None:
        query = query.where(Report.source == source)
    if before is not None:
        query = query.where(Report.id < before)
    rows = (await session.scalars(query.order_by(Report.id.desc()).limit(limit))).all()
    out = [await _report_body(session, who, r, full=False) for r in rows]
    for report in rows:
        await record_read(session, principal, audit_key(report.id), AUDIT_LIST)
    await session.commit()
    return {"reports": out, "next_before": rows[-1].id if len(rows) == limit else None}


@router.get(
    "/reports/{report_id}",
    summary="One report with its evidence files",
    responses={**UNAUTHORIZED, **NOT_FOUND_REPORT},
)
async def get_report(
    report_id: ReportId, principal: UserDep, session: SessionDep
) -> dict[str, Any]:
    """Each file with its SHA-256 (taken on arrival) and size. The alert's history for
    the dispatchers and admins the report is routed to. Never who made it (see
    ``/reveal``). The read is audited."""
    who = await store.viewer(session, principal)
    report = await store.visible_report(session, who, report_id)
    body = await _report_body(session, who, report, full=True)
    await record_read(session, principal, audit_key(report.id), AUDIT_READ)
    await session.commit()
    return body


@router.get(
    "/reports/{report_id}/media/{media_id}",
    summary="One evidence file",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}, "audio/ogg": {}, "video/mp4": {}}},
        **UNAUTHORIZED,
        404: _err("No such report or file, or none you may see."),
        503: _err("The evidence store cannot be reached: try again."),
    },
)
async def get_media(
    report_id: ReportId,
    media_id: Annotated[int, Path(ge=1, le=2**31 - 1)],
    principal: UserDep,
    session: SessionDep,
    evidence_store: EvidenceDep,
) -> Response:
    """The original file, as it arrived, for the dispatchers and admins the report is
    routed to (``X-Sigueme-SHA256`` is its SHA-256); for everyone else who may see the
    report, the copy without location metadata (404 when none could be made). Never a
    public URL: each download is checked and audited."""
    who = await store.viewer(session, principal)
    report = await store.visible_report(session, who, report_id)
    media = await session.get(ReportMedia, media_id)
    if media is None or media.report_id != report.id:
        raise NotFound("no such file")
    if who.may_work(report):
        key, digest, variant = media.storage_key, media.sha256, "original"
    elif media.redacted_key is not None:
        key, digest, variant = media.redacted_key, media.redacted_sha256 or "", "redacted"
    else:
        raise NotFound("no copy of this file without location metadata")
    try:
        data = await evidence_store.get(key)
    except EvidenceNotFound:
        raise NotFound("the file is no longer kept") from None
    except EvidenceStoreError as exc:
        return _unavailable(exc)
    except EvidenceCorrupt:
        return JSONResponse(
            {"detail": "the stored file does not match its SHA-256: it was altered or damaged"},
            status_code=500,
        )
    await record_read(session, principal, audit_key(report.id), AUDIT_MEDIA)
    await session.commit()
    extension = media.content_type.rsplit("/", 1)[-1]
    name = f"{report.folio or report.id}-{media.id}.{extension}"
    return Response(
        data,
        media_type=media.content_type,
        headers={
            "X-Sigueme-SHA256": digest,
            "X-Sigueme-Evidence": variant,
            "Content-Disposition": f'attachment; filename="{name}"',
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


# -- what dispatchers do ------------------------------------------------------------------------


@router.patch(
    "/reports/{report_id}",
    summary="Set a report's category or channel",
    responses={**UNAUTHORIZED, **DISPATCHERS, **NOT_FOUND_REPORT, **INVALID},
)
async def patch_report(
    report_id: ReportId, body: ReportPatch, principal: DispatcherDep, conn: HTTPConnection
) -> dict[str, Any]:
    """The category sets the alert's severity (an attack: 4, máxima). Each change is a
    step of the alert's history and goes out on the police queue."""
    kw: dict[str, Any] = {}
    if "channel" in body.model_fields_set:
        kw["channel"] = body.channel.strip() if body.channel else None
    async with conn.app.state.sessions() as session, session.begin():
        who = await store.viewer(session, principal)
        changes = await service.change_report(
            session, who, report_id, now=utcnow(), category=body.category, **kw
        )
    wake_relay(conn.app.state, changes)
    async with conn.app.state.sessions() as session:
        report = await session.get(Report, report_id)
        if report is None:
            raise NotFound("no such report")
        return await _report_body(session, who, report, full=False)


@router.post(
    "/reports/{report_id}/reveal",
    summary="Who made a report (audited)",
    responses={**UNAUTHORIZED, **DISPATCHERS, **NOT_FOUND_REPORT, **INVALID},
)
async def reveal_reporter(
    report_id: ReportId, body: RevealIn, principal: DispatcherDep, session: SessionDep
) -> dict[str, Any]:
    """The reporter's name and contact (WhatsApp: their profile name and number), or
    ``anónimo``. Written to the audit log and, police-only, to the alert's history, with
    the ``reason``."""
    who = await store.viewer(session, principal)
    reporter = await service.reveal(
        session, who, report_id, reason=body.reason.strip(), now=utcnow()
    )
    await record_read(session, principal, audit_key(report_id), AUDIT_REVEAL)
    await session.commit()
    if reporter.anonymous:
        return {
            "report_id": report_id,
            "anonymous": True,
            "name": "anónimo",
            "contact": None,
            "user": None,
            "source": reporter.source,
        }
    return {
        "report_id": report_id,
        "anonymous": False,
        "name": reporter.name,
        "contact": reporter.contact,
        "user": reporter.user,
        "source": reporter.source,
    }


@router.post(
    "/reports/{report_id}/refer-fede",
    summary="Refer an electoral crime to FEDE Morelos",
    responses={
        **UNAUTHORIZED,
        **DISPATCHERS,
        **NOT_FOUND_REPORT,
        409: _err("Not an electoral-crime category, or referred already."),
    },
)
async def refer_to_fede(
    report_id: ReportId, principal: DispatcherDep, conn: HTTPConnection, body: FedeIn | None = None
) -> dict[str, Any]:
    """A recorded step of the report's alert (``referred_fede``, the status does not
    change), on the police queue; shown with the report."""
    note = ((body.note if body else None) or "").strip() or None
    async with conn.app.state.sessions() as session, session.begin():
        who = await store.viewer(session, principal)
        change = await service.refer_fede(session, who, report_id, note=note, now=utcnow())
    wake_relay(conn.app.state, [change])
    return {"report_id": report_id, "alert_id": change.alert_id, "event": change.action}


# -- channels ------------------------------------------------------------------------------------


def _channel_body(channel: ReportChannel, members: list[str] | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": channel.id,
        "name": channel.name,
        "kind": channel.kind,
        "description": channel.description,
        "created_at": _iso(channel.created_at),
    }
    if members is not None:
        body["members"] = members
    return body


@router.post(
    "/channels",
    status_code=201,
    summary="Make a channel (admins)",
    responses={**UNAUTHORIZED, 403: _err("Admins only."), 409: _err("Name taken."), **INVALID},
)
async def create_channel(body: ChannelIn, _admin: AdminDep, session: SessionDep) -> dict[str, Any]:
    channel = await store.create_channel(
        session,
        name=body.name.strip(),
        kind=body.kind,
        description=_clean(body.description),
    )
    await session.commit()
    return _channel_body(channel, [])


@router.get("/channels", summary="Channels", responses={**UNAUTHORIZED})
async def list_channels(principal: UserDep, session: SessionDep) -> dict[str, Any]:
    """Admins: every channel with its members; everyone else: the channels they are a
    member of."""
    if principal.role == Role.ADMIN:
        channels = await store.list_channels(session)
        members = await store.members_of(session, [c.id for c in channels])
        return {"channels": [_channel_body(c, members[c.id]) for c in channels]}
    channels = await store.list_channels(session, member_id=principal.user_id)
    return {"channels": [_channel_body(c, None) for c in channels]}


MemberName = Annotated[str, Path(min_length=1, max_length=100, description="A login name.")]


@router.put(
    "/channels/{channel_id}/members/{user}",
    status_code=204,
    summary="Add a dispatcher or monitor to a channel (admins)",
    responses={
        **UNAUTHORIZED,
        403: _err("Admins only."),
        404: _err("No such channel or user."),
        **INVALID,
    },
)
async def put_member(
    channel_id: ChannelId, user: MemberName, _admin: AdminDep, session: SessionDep
) -> Response:
    channel = await store.get_channel(session, channel_id)
    member = await get_user(session, user)
    await store.add_member(session, channel, member)
    await session.commit()
    return Response(status_code=204)


@router.delete(
    "/channels/{channel_id}/members/{user}",
    status_code=204,
    summary="Remove a member from a channel (admins)",
    responses={**UNAUTHORIZED, 403: _err("Admins only."), 404: _err("No such channel or user.")},
)
async def delete_member(
    channel_id: ChannelId, user: MemberName, _admin: AdminDep, session: SessionDep
) -> Response:
    channel = await store.get_channel(session, channel_id)
    member = await get_user(session, user)
    await store.remove_member(session, channel, member)
    await session.commit()
    return Response(status_code=204)
