"""Where evidence files are kept: one small interface, a local-disk store (the embedded
default) and an S3-compatible object store (production).

Objects are content-addressed: the key of a file is the hex SHA-256 of its bytes, so a
file stored twice is kept once, and every read checks the bytes against their key (a
file changed on disk or in the bucket is reported, never served). Neither store serves
anything itself: the API reads through :meth:`EvidenceStore.get` after its own access
check.

Because two reports may hold the very same file, deleting a key deletes it for both:
the caller deletes a key only when no report still refers to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sigueme.errors import NotFound, SiguemeError

if TYPE_CHECKING:
    from types_boto3_s3.client import S3Client

_KEY = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True, slots=True)
class StoredObject:
    """A file in the evidence store."""

    key: str
    """Its hex SHA-256, which is also how it is found again."""
    sha256: str
    size: int
    content_type: str


class EvidenceNotFound(NotFound):
    """No object under that key (or not a key at all)."""


class EvidenceCorrupt(SiguemeError):
    """The stored bytes no longer match their SHA-256: the evidence was altered or damaged."""


class EvidenceStoreError(SiguemeError):
    """The store could not be reached or refused the operation (retry later)."""


class EvidenceStore(Protocol):
    """Where evidence files are kept."""

    async def put(self, data: bytes, *, content_type: str) -> StoredObject:
        """Store ``data`` (idempotent: the same bytes give the same key)."""
        ...

    async def get(self, key: str) -> bytes:
        """The bytes under ``key``, checked against it; :class:`EvidenceNotFound`,
        :class:`EvidenceCorrupt`."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object under ``key``; nothing happens when there is none."""
        ...

    async def exists(self, key: str) -> bool: ...

    async def aclose(self) -> None:
        """Release the store's connections."""
        ...


def _check_key(key: str) -> str:
    if not isinstance(key, str) or not _KEY.match(key):
        raise EvidenceNotFound("no such evidence")
    return key


def _verified(key: str, data: bytes) -> bytes:
    if hashlib.sha256(data).hexdigest() != key:
        raise EvidenceCorrupt(f"evidence {key[:12]}… does not match its SHA-256")
    return data


# -- local disk ------------------------------------------------------------------------


class LocalEvidenceStore:
    """Evidence files under ``root``, at ``root/ab/cd/abcd…`` (the key split to keep
    directories small). Writes are atomic: a temporary file in the same directory is
    written, flushed to disk and renamed into place, then the directory is synced, so a
    crash leaves either the whole file or none. Files are readable by the owner only."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def path_of(self, key: str) -> Path:
        key = _check_key(key)
        return self.root / key[:2] / key[2:4] / key

    async def put(self, data: bytes, *, content_type: str) -> StoredObject:
        key = hashlib.sha256(data).hexdigest()
        await asyncio.to_thread(self._write, key, data)
        return StoredObject(key=key, sha256=key, size=len(data), content_type=content_type)

    def _write(self, key: str, data: bytes) -> None:
        path = self.path_of(key)
        if path.is_file() and path.stat().st_size == len(data):
            return  # content-addressed: the same bytes are already there
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for directory in (path.parent.parent, path.parent):
            directory.mkdir(mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _fsync_dir(path.parent)

    async def get(self, key: str) -> bytes:
        path = self.path_of(key)
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except FileNotFoundError:
            raise EvidenceNotFound("no such evidence") from None
        return _verified(key, data)

    async def delete(self, key: str) -> None:
        path = self.path_of(key)
        try:
            await asyncio.to_thread(path.unlink)
        except FileNotFoundError:
            return
        await asyncio.to_thread(_fsync_dir, path.parent)

    async def exists(self, key: str) -> bool:
        try:
            path = self.path_of(key)
        except EvidenceNotFound:
            return False
        return await asyncio.to_thread(path.is_file)

    async def aclose(self) -> None:
        return None


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- S3-compatible object storage -------------------------------------------------------


class S3EvidenceStore:
    """Evidence files in an S3-compatible bucket (AWS S3, MinIO, Ceph, ...), as objects
    ``{prefix}ab/abcd…`` with their content type and SHA-256 as metadata.

    boto3 is synchronous; its client is thread-safe, so each call runs in a worker
    thread. Checksums are computed only when an operation requires them, and paths are
    addressed path-style, which S3-compatible servers other than AWS expect.
    """

    def __init__(
        self,
        *,
        bucket: str,
        endpoint_url: str | None = None,
        access_key: str | None = None,
        secret_key: str | None = None,
        region: str = "us-east-1",
        prefix: str = "evidence/",
        timeout_s: float = 30.0,
    ) -> None:
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        self._client: S3Client = boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            region_name=region,
            config=Config(
                s3={"addressing_style": "path"},
                connect_timeout=timeout_s,
                read_timeout=timeout_s,
                retries={"max_attempts": 3, "mode": "standard"},
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            ),
        )

    def object_name(self, key: str) -> str:
        key = _check_key(key)
        return f"{self.prefix}{key[:2]}/{key}"

    async def put(self, data: bytes, *, content_type: str) -> StoredObject:
        key = hashlib.sha256(data).hexdigest()
        name = self.object_name(key)
        if not await self.exists(key):
            await self._call(
                self._client.put_object,
                Bucket=self.bucket,
                Key=name,
                Body=data,
                ContentType=content_type,
                Metadata={"sha256": key},
            )
        return StoredObject(key=key, sha256=key, size=len(data), content_type=content_type)

    async def get(self, key: str) -> bytes:
        name = self.object_name(key)

        def read() -> bytes:
            response = self._client.get_object(Bucket=self.bucket, Key=name)
            body = response["Body"]
            try:
                return body.read()
            finally:
                body.close()

        return _verified(key, await self._call(read))

    async def delete(self, key: str) -> None:
        await self._call(self._client.delete_object, Bucket=self.bucket, Key=self.object_name(key))

    async def exists(self, key: str) -> bool:
        try:
            await self._call(
                self._client.head_object, Bucket=self.bucket, Key=self.object_name(key)
            )
        except EvidenceNotFound:
            return False
        return True

    async def aclose(self) -> None:
        await asyncio.to_thread(self._client.close)

    async def _call(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code != "NoSuchBucket" and (
                code in ("404", "NoSuchKey", "NotFound") or status == 404
            ):
                raise EvidenceNotFound("no such evidence") from None
            raise EvidenceStoreError(f"object storage refused the request: {code}") from exc
        except BotoCoreError as exc:
            raise EvidenceStoreError(f"object storage unreachable: {type(exc).__name__}") from exc
