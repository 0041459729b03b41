"""A report from the traveller's phone socket: a voice note or a photo attached to the
trip in progress (a traveller in trouble records what happens), without a second
connection.

The frame (within the socket's 128 KiB, so small media: some 90 KiB of file once
base64-encoded)::

    {"type": "report", "text": "Nos siguen desde Temixco", "category": "threat",
     "lat": 18.92, "lon": -99.23, "media": [{"content_type": "audio/ogg",
     "data": "<base64>"}]}

``category`` defaults to ``other`` (a dispatcher sets it), the position to the trip's
last one; at most two files. The report is linked to the trip, enters the police queue
at once like any report (``POST /v1/reports``), and the phone is answered
``{"type": "report_ack", "report_id", "folio", "alert_id"}`` once it is committed, or an
error frame naming the field (nothing stored).
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from sigueme.access import Principal
from sigueme.api.fixes_in import wake_relay
from sigueme.api.phone_protocol import FrameError, field_name
from sigueme.reports.categories import ReportCategory
from sigueme.reports.media import MediaRejected, accept_evidence
from sigueme.reports.storage import EvidenceStore
from sigueme.services import reports as service
from sigueme.store.models import utcnow

MAX_PHONE_FILES: Final = 2


class _MediaIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    content_type: str = Field(min_length=3, max_length=100)
    data: str = Field(min_length=4, max_length=128 * 1024)


class ReportFrame(BaseModel):
    model_config = ConfigDict(strict=True, allow_inf_nan=False, extra="ignore", frozen=True)

    type: Literal["report"]
    text: str = Field(default="", max_length=4_000)
    category: ReportCategory = Field(default=ReportCategory.OTHER, strict=False)
    lat: float | None = Field(default=None, ge=-90.0, le=90.0)
    lon: float | None = Field(default=None, ge=-180.0, le=180.0)
    place: str | None = Field(default=None, max_length=300)
    media: list[_MediaIn] = Field(default_factory=list, max_length=MAX_PHONE_FILES)


def parse_report(raw: dict[str, Any]) -> ReportFrame:
    """The report frame in ``raw`` (already JSON), or :class:`FrameError`."""
    try:
        frame = ReportFrame.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors(include_input=False, include_url=False)[0]
        msg = str(first.get("msg", "invalid")).removeprefix("Value error, ")
        raise FrameError(msg, field_name(first.get("loc", ())) or None) from None
    if (frame.lat is None) != (frame.lon is None):
        raise FrameError("give both lat and lon, or neither", "lat" if frame.lat is None else "lon")
    if "\x00" in frame.text or (frame.place and "\x00" in frame.place):
        raise FrameError("NUL characters are not accepted", "text")
    return frame


async def phone_report(
    state: Any, principal: Principal, trip_id: str, frame: ReportFrame
) -> dict[str, Any]:
    """File ``frame`` for ``trip_id``; the frame answering the phone. Raises
    :class:`FrameError` for a refused file or report (nothing stored), and lets database
    and evidence-store errors through (the caller answers "resend")."""
    files = []
    for i, media in enumerate(frame.media):
        try:
            data = base64.b64decode(media.data, validate=True)
        except (binascii.Error, ValueError):
            raise FrameError("is not base64", f"media[{i}].data") from None
        try:
            files.append(accept_evidence(data, media.content_type, field=f"media[{i}]"))
        except MediaRejected as exc:
            raise FrameError(exc.reason, exc.field) from None
    if not frame.text.strip() and not files:
        raise FrameError("say what happened: text, or at least one file", "text")
    evidence: EvidenceStore | None = getattr(state, "evidence_store", None)
    if evidence is None:
        raise FrameError("reports are not available on this server", "type")
    new = service.NewReport(
        text=frame.text.strip(),
        category=frame.category,
        lon=frame.lon,
        lat=frame.lat,
        place=(frame.place or "").strip() or None,
        trip_id=trip_id,
    )
    submitted = await service.submit_report(
        state.sessions, evidence, principal, new, files, now=utcnow()
    )
    wake_relay(state, [submitted.change])
    return {
        "type": "report_ack",
        "report_id": submitted.report_id,
        "folio": submitted.folio,
        "alert_id": submitted.alert_id,
    }
