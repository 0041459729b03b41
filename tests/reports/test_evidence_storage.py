"""The evidence stores: content-addressed, idempotent, checked on every read, on local
disk and on an S3-compatible server (moto's, on a free loopback port)."""

from __future__ import annotations

import hashlib
import os
import socket
import stat
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import boto3
import pytest
import pytest_asyncio
import sample_media as sample

from sigueme.errors import NotFound
from sigueme.reports.storage import (
    EvidenceCorrupt,
    EvidenceNotFound,
    EvidenceStore,
    EvidenceStoreError,
    LocalEvidenceStore,
    S3EvidenceStore,
    StoredObject,
)

CREDENTIALS = {"access_key": "sigueme-test", "secret_key": "sigueme-test-secret"}


@pytest_asyncio.fixture(params=["local", "s3"])
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, s3_endpoint: str
) -> AsyncIterator[EvidenceStore]:
    if request.param == "local":
        yield LocalEvidenceStore(tmp_path / "evidence")
        return
    bucket = f"evidence-{uuid.uuid4().hex[:12]}"
    admin = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=CREDENTIALS["access_key"],
        aws_secret_access_key=CREDENTIALS["secret_key"],
        region_name="us-east-1",
    )
    admin.create_bucket(Bucket=bucket)
    admin.close()
    s3 = S3EvidenceStore(bucket=bucket, endpoint_url=s3_endpoint, **CREDENTIALS)
    try:
        yield s3
    finally:
        await s3.aclose()


async def test_put_get_delete(store: EvidenceStore) -> None:
    photo = sample.jpeg(gps=sample.ZOCALO)
    stored = await store.put(photo, content_type="image/jpeg")
    digest = hashlib.sha256(photo).hexdigest()
    assert stored == StoredObject(
        key=digest, sha256=digest, size=len(photo), content_type="image/jpeg"
    )
    assert await store.exists(stored.key)
    assert await store.get(stored.key) == photo
    await store.delete(stored.key)
    assert not await store.exists(stored.key)
    with pytest.raises(EvidenceNotFound):
        await store.get(stored.key)
    await store.delete(stored.key)  # deleting twice is fine


async def test_the_same_bytes_are_kept_once(store: EvidenceStore) -> None:
    voice = sample.ogg_opus()
    first = await store.put(voice, content_type="audio/ogg")
    second = await store.put(voice, content_type="audio/ogg")
    assert first.key == second.key
    other = await store.put(voice + b"\x00", content_type="audio/ogg")
    assert other.key != first.key
    assert await store.get(first.key) == voice


@pytest.mark.parametrize("key", ["", "../../etc/passwd", "A" * 64, "0" * 63, "0" * 64 + "/x"])
async def test_anything_but_a_key_is_not_found(store: EvidenceStore, key: str) -> None:
    with pytest.raises(EvidenceNotFound):
        await store.get(key)
    assert not await store.exists(key)
    assert issubclass(EvidenceNotFound, NotFound)


async def test_local_files_are_atomic_private_and_checked_on_read(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path)
    photo = sample.jpeg()
    stored = await store.put(photo, content_type="image/jpeg")
    path = store.path_of(stored.key)
    assert path == tmp_path / stored.key[:2] / stored.key[2:4] / stored.key
    assert path.read_bytes() == photo
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.parent.parent.stat().st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == [stored.key]  # no temporary file left
    # Someone alters the file on disk: it is reported, never served.
    path.write_bytes(photo[:-1] + b"\x00")
    with pytest.raises(EvidenceCorrupt):
        await store.get(stored.key)


async def test_a_failed_local_write_leaves_nothing(tmp_path: Path) -> None:
    store = LocalEvidenceStore(tmp_path)
    photo = sample.jpeg()
    key = hashlib.sha256(photo).hexdigest()
    target = store.path_of(key)
    target.mkdir(parents=True)  # the rename onto a directory fails
    with pytest.raises(OSError):  # noqa: PT011 - the OS's own error, whatever it is
        await store.put(photo, content_type="image/jpeg")
    assert sorted(p.name for p in target.parent.iterdir()) == [key]
    os.rmdir(target)


async def test_s3_objects_carry_type_and_hash_and_are_checked_on_read(s3_endpoint: str) -> None:
    bucket = f"evidence-{uuid.uuid4().hex[:12]}"
    admin = boto3.session.Session().client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=CREDENTIALS["access_key"],
        aws_secret_access_key=CREDENTIALS["secret_key"],
        region_name="us-east-1",
    )
    admin.create_bucket(Bucket=bucket)
    store = S3EvidenceStore(
        bucket=bucket, endpoint_url=s3_endpoint, prefix="pruebas/", **CREDENTIALS
    )
    try:
        video = sample.mp4(location=sample.ZOCALO)
        stored = await store.put(video, content_type="video/mp4")
        name = f"pruebas/{stored.key[:2]}/{stored.key}"
        head = admin.head_object(Bucket=bucket, Key=name)
        assert head["ContentType"] == "video/mp4"
        assert head["Metadata"] == {"sha256": stored.key}
        admin.put_object(Bucket=bucket, Key=name, Body=video + b"tampered")
        with pytest.raises(EvidenceCorrupt):
            await store.get(stored.key)
    finally:
        admin.close()
        await store.aclose()


async def test_s3_missing_bucket_or_server_is_a_store_error(s3_endpoint: str) -> None:
    missing = S3EvidenceStore(bucket="no-such-bucket", endpoint_url=s3_endpoint, **CREDENTIALS)
    try:
        with pytest.raises(EvidenceStoreError):
            await missing.put(b"x", content_type="image/jpeg")
    finally:
        await missing.aclose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    down = S3EvidenceStore(
        bucket="evidence", endpoint_url=f"http://127.0.0.1:{port}", timeout_s=2, **CREDENTIALS
    )
    try:
        with pytest.raises(EvidenceStoreError, match="unreachable"):
            await down.get("0" * 64)
    finally:
        await down.aclose()
