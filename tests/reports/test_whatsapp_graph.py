"""The Graph API client against a stand-in server speaking the documented format: media
look-up, streamed download with a size cap, text replies, and Graph's errors."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio
import sample_media as sample
from graph_standin import PHONE_NUMBER_ID, GraphStandin

from sigueme.reports.media import MIB, MediaProblem, MediaRejected
from sigueme.reports.whatsapp import (
    MAX_REPLY,
    GraphClient,
    GraphError,
    MediaInfo,
    digest_matches,
)


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def client_for(
    graph: GraphStandin, http: httpx.AsyncClient, token: str | None = None
) -> GraphClient:
    return GraphClient(graph.base_url, token or graph.access_token, graph.api_version, http)


async def test_media_is_looked_up_and_downloaded(
    graph: GraphStandin, http: httpx.AsyncClient
) -> None:
    photo = sample.jpeg(gps=sample.ZOCALO)
    media_id = graph.add_media(photo, "image/jpeg")
    client = client_for(graph, http)
    info = await client.media_info(media_id)
    assert info == MediaInfo(
        id=media_id,
        url=f"{graph.base_url}/whatsapp_business/attachments/?mid={media_id}&ext=1",
        mime_type="image/jpeg",
        sha256=hashlib.sha256(photo).hexdigest(),
        file_size=len(photo),
    )
    assert ("GET", f"/v23.0/{media_id}") in graph.requests
    downloaded = await client.fetch_media(media_id, max_bytes=5 * MIB)
    assert downloaded.data == photo
    assert downloaded.sha256_matches is True


async def test_a_download_past_the_cap_is_stopped(
    graph: GraphStandin, http: httpx.AsyncClient
) -> None:
    client = client_for(graph, http)
    big = sample.mp4(media=bytes(2 * MIB))
    # Announced honestly: refused before the download.
    honest = graph.add_media(big, "video/mp4")
    before = len(graph.requests)
    with pytest.raises(MediaRejected) as caught:
        await client.fetch_media(honest, max_bytes=MIB)
    assert caught.value.problem is MediaProblem.TOO_BIG
    assert len(graph.requests) == before + 1  # the look-up only
    # Announced too small, served with a Content-Length: refused from the header.
    liar = graph.add_media(big, "video/mp4", file_size=1000)
    with pytest.raises(MediaRejected):
        await client.fetch_media(liar, max_bytes=MIB)
    # Announced too small and streamed without a length: stopped while reading.
    streamed = graph.add_media(big, "video/mp4", file_size=1000, chunked=True)
    with pytest.raises(MediaRejected) as caught:
        await client.fetch_media(streamed, max_bytes=MIB)
    assert caught.value.field == "media"
    # The same stream within the cap arrives whole.
    assert (await client.fetch_media(streamed, max_bytes=3 * MIB)).data == big


async def test_a_hash_that_does_not_match_is_reported(
    graph: GraphStandin, http: httpx.AsyncClient
) -> None:
    voice = sample.ogg_opus()
    media_id = graph.add_media(voice, "audio/ogg", sha256="0" * 64)
    downloaded = await client_for(graph, http).fetch_media(media_id, max_bytes=MIB)
    assert downloaded.sha256_matches is False


def test_announced_hashes_in_hex_or_base64() -> None:
    data = b"evidencia"
    digest = hashlib.sha256(data).digest()
    assert digest_matches(data, digest.hex()) is True
    assert digest_matches(data, digest.hex().upper()) is True
    assert digest_matches(data, base64.b64encode(digest).decode()) is True
    assert digest_matches(data, base64.urlsafe_b64encode(digest).decode().rstrip("=")) is True
    assert digest_matches(b"otra", digest.hex()) is False
    assert digest_matches(data, None) is None
    assert digest_matches(data, "no es un hash") is None


async def test_a_text_reply_is_sent_in_the_documented_shape(
    graph: GraphStandin, http: httpx.AsyncClient
) -> None:
    client = client_for(graph, http)
    wamid = await client.send_text(PHONE_NUMBER_ID, "5217771234567", "Recibimos tu reporte.")
    assert wamid.startswith("wamid.")
    assert graph.sent[-1] == {
        "phone_number_id": PHONE_NUMBER_ID,
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5217771234567",
        "type": "text",
        "text": {"preview_url": False, "body": "Recibimos tu reporte."},
    }
    assert ("POST", f"/v23.0/{PHONE_NUMBER_ID}/messages") in graph.requests


async def test_replies_are_bounded(graph: GraphStandin, http: httpx.AsyncClient) -> None:
    client = client_for(graph, http)
    sent = len(graph.sent)
    await client.send_text(PHONE_NUMBER_ID, "5217771234567", "á" * MAX_REPLY)
    for body in ("", "x" * (MAX_REPLY + 1)):
        with pytest.raises(ValueError, match="4096"):
            await client.send_text(PHONE_NUMBER_ID, "5217771234567", body)
    assert len(graph.sent) == sent + 1


async def test_graph_errors_become_graph_error(
    graph: GraphStandin, http: httpx.AsyncClient
) -> None:
    with pytest.raises(GraphError) as caught:
        await client_for(graph, http, token="wrong").media_info("1")
    assert (caught.value.status, caught.value.code) == (401, 190)
    assert "Invalid OAuth access token" in str(caught.value)
    assert "wrong" not in str(caught.value)
    with pytest.raises(GraphError) as caught:
        await client_for(graph, http).media_info("999")
    assert (caught.value.status, caught.value.code) == (400, 100)
    with pytest.raises(GraphError) as caught:
        await client_for(graph, http, token="wrong").send_text(PHONE_NUMBER_ID, "52177", "hola")
    assert caught.value.status == 401
    media_id = graph.add_media(b"x", "image/jpeg")
    info = await client_for(graph, http).media_info(media_id)
    with pytest.raises(GraphError) as caught:
        await client_for(graph, http, token="wrong").download(info.url, max_bytes=MIB)
    assert caught.value.status == 401


async def test_media_ids_cannot_reach_other_paths(
    graph: GraphStandin, http: httpx.AsyncClient
) -> None:
    for bad in ("../me", "1/messages", "", "1?x=2"):
        with pytest.raises(GraphError, match="not a media id"):
            await client_for(graph, http).media_info(bad)


async def test_an_unreachable_graph_is_a_graph_error(http: httpx.AsyncClient) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = GraphClient(f"http://127.0.0.1:{port}", "token", "23.0", http)
    assert client.version == "v23.0"
    with pytest.raises(GraphError, match="could not be reached") as caught:
        await client.media_info("1")
    assert caught.value.status is None


def test_the_client_checks_its_settings(http: httpx.AsyncClient) -> None:
    with pytest.raises(ValueError, match="api_version"):
        GraphClient("https://graph.facebook.com", "token", "latest", http)
    with pytest.raises(ValueError, match="access token"):
        GraphClient("https://graph.facebook.com", "", "v23.0", http)


async def test_an_https_graph_only_downloads_over_https(http: httpx.AsyncClient) -> None:
    client = GraphClient("https://graph.facebook.com", "token", "v23.0", http)
    with pytest.raises(GraphError, match="not HTTPS"):
        await client.download("http://lookaside.example/x", max_bytes=MIB)
    with pytest.raises(GraphError, match="not a download URL"):
        await client.download("file:///etc/passwd", max_bytes=MIB)
