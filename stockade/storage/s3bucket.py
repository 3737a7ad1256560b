"""One S3-compatible bucket, through one aiobotocore client.

Owns the client's life (credentials, addressing, timeouts), the few object
operations the blob and record stores need, conditional writes, multipart
upload of a local file in bounded parts, and translating botocore errors into
the storage error tree: nothing above this module sees a botocore or aiohttp
exception. It does not know what the objects are.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session
from botocore.exceptions import BotoCoreError, ClientError

from stockade.config.model import S3Settings
from stockade.storage.errors import StorageError

if TYPE_CHECKING:
    from types_aiobotocore_s3.client import S3Client

logger = logging.getLogger(__name__)

PART_BYTES = 8 * 1024**2  # multipart part size: the most memory one upload holds
READ_CHUNK = 256 * 1024  # bytes
_MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
# 412: the condition failed (another writer won); 409: a concurrent conditional
# write to the same key is in flight (AWS asks the loser to retry).
_CONFLICT = frozenset({"PreconditionFailed", "412", "ConditionalRequestConflict", "409"})
_DEFAULT_ENV = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")


@functools.cache
def _session() -> AioSession:
    # Shared only for its cache of botocore's service models (read-only data):
    # each client still has its own credentials and connections, and a client
    # made from a warm session opens in milliseconds instead of half a second.
    return get_session()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _error(exc: Exception, what: str) -> StorageError:
    detail = _code(exc) if isinstance(exc, ClientError) else type(exc).__name__
    return StorageError(f"object storage failed to {what}: {detail}: {exc}")


def credentials(settings: S3Settings, environ: Mapping[str, str]) -> dict[str, str]:
    """The explicit credentials the settings name, or {} for the standard AWS chain.

    Raises:
        StorageError: variables other than the standard ones are named but not set.
    """
    key = environ.get(settings.access_key_id_env or "")
    secret = environ.get(settings.secret_access_key_env or "")
    if key and secret:
        found = {"aws_access_key_id": key, "aws_secret_access_key": secret}
        token = environ.get("AWS_SESSION_TOKEN")
        if token and settings.access_key_id_env == _DEFAULT_ENV[0]:
            found["aws_session_token"] = token
        return found
    named = {settings.access_key_id_env, settings.secret_access_key_env} - {None, *_DEFAULT_ENV}
    if named:
        raise StorageError(
            f"storage.s3 names credential variables {sorted(n for n in named if n)} "
            "that are not set"
        )
    return {}


class S3Bucket:
    """A bucket and key prefix; ``open`` before use, ``close`` after."""

    def __init__(self, settings: S3Settings, environ: Mapping[str, str]) -> None:
        self.settings = settings
        self.name = settings.bucket
        self.prefix = settings.prefix
        self._environ = dict(environ)
        self._stack = contextlib.AsyncExitStack()
        self._client: S3Client | None = None

    @property
    def client(self) -> S3Client:
        if self._client is None:
            raise StorageError("the object storage client is not open")
        return self._client

    async def open(self) -> None:
        """Open the client (no request is made).

        Raises:
            StorageError: the credentials named in the settings are missing.
        """
        if self._client is not None:
            return
        s = self.settings
        region = s.region or ("us-east-1" if s.endpoint_url else None)
        config = AioConfig(
            s3={"addressing_style": s.addressing_style},
            signature_version="s3v4",
            retries={"max_attempts": 3, "mode": "standard"},
            connect_timeout=10, read_timeout=60, max_pool_connections=64,
            # Checksums only where an operation needs one: MinIO, Ceph RGW and
            # other S3 servers do not all accept the newer trailing checksums.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        creds = credentials(s, self._environ)
        creator = _session().create_client(
            "s3", region_name=region, endpoint_url=s.endpoint_url, config=config,
            aws_access_key_id=creds.get("aws_access_key_id"),
            aws_secret_access_key=creds.get("aws_secret_access_key"),
            aws_session_token=creds.get("aws_session_token"),
        )
        self._client = await self._stack.enter_async_context(creator)

    async def close(self) -> None:
        """Close the client and its connections."""
        self._client = None
        await self._stack.aclose()

    def key(self, suffix: str) -> str:
        """The full key of ``suffix`` under the prefix."""
        return self.prefix + suffix

    async def reachable(self) -> bool:
        """True when the bucket answers with these credentials."""
        try:
            await self.client.head_bucket(Bucket=self.name)
        except (ClientError, BotoCoreError, StorageError) as exc:
            logger.warning("object storage bucket %s is not reachable: %s", self.name, exc)
            return False
        return True

    async def head(self, key: str) -> int | None:
        """The object's size, or None when there is none.

        Raises:
            StorageError: the request failed.
        """
        try:
            resp = await self.client.head_object(Bucket=self.name, Key=key)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            raise _error(exc, f"look up {key}") from exc
        except BotoCoreError as exc:
            raise _error(exc, f"look up {key}") from exc
        return int(resp["ContentLength"])

    async def get(self, key: str) -> tuple[bytes, str] | None:
        """A small object's bytes and ETag, or None when there is none.

        Raises:
            StorageError: the request failed.
        """
        stream = await self.stream(key)
        if stream is None:
            return None
        etag, chunks = stream
        return b"".join([chunk async for chunk in chunks]), etag

    async def stream(
        self, key: str, start: int = 0
    ) -> tuple[str, AsyncIterator[bytes]] | None:
        """The object's ETag and bytes from ``start``, or None when there is none.

        Raises:
            StorageError: the request failed (also while iterating).
        """
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key}
        if start:
            kwargs["Range"] = f"bytes={start}-"
        try:
            resp = await self.client.get_object(**kwargs)
        except ClientError as exc:
            if _code(exc) in _MISSING:
                return None
            if _code(exc) == "InvalidRange":  # start is the size: nothing left
                return "", _nothing()
            raise _error(exc, f"read {key}") from exc
        except BotoCoreError as exc:
            raise _error(exc, f"read {key}") from exc
        return str(resp.get("ETag", "")), self._chunks(key, resp["Body"])

    @staticmethod
    async def _chunks(key: str, body: Any) -> AsyncIterator[bytes]:
        try:
            async for chunk in body.iter_chunks(READ_CHUNK):
                yield chunk
        except (BotoCoreError, aiohttp.ClientError, TimeoutError) as exc:
            raise _error(exc, f"read {key}") from exc
        finally:
            body.close()

    async def put(
        self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None
    ) -> bool:
        """Write an object; False when its condition failed (another writer won).

        Raises:
            StorageError: the request failed.
        """
        kwargs: dict[str, Any] = {"Bucket": self.name, "Key": key, "Body": data}
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            await self.client.put_object(**kwargs)
        except ClientError as exc:
            # If-Match on a key deleted meanwhile answers 404: a lost race too.
            if _code(exc) in _CONFLICT or (if_match is not None and _code(exc) in _MISSING):
                return False
            raise _error(exc, f"write {key}") from exc
        except BotoCoreError as exc:
            raise _error(exc, f"write {key}") from exc
        return True

    async def upload_new(self, key: str, path: Path, size: int) -> bool:
        """Upload a local file unless the key exists (``If-None-Match: *``); False
        when another writer stored it first. Large files go in parts of
        ``PART_BYTES``, so memory stays bounded whatever the size.

        Raises:
            StorageError: the upload failed; nothing was stored.
        """
        if size <= PART_BYTES:
            data = await asyncio.to_thread(path.read_bytes)
            return await self.put(key, data, if_none_match=True)
        try:
            upload = await self.client.create_multipart_upload(Bucket=self.name, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"start uploading {key}") from exc
        upload_id = upload["UploadId"]
        try:
            parts = await self._upload_parts(key, upload_id, path, size)
            await self.client.complete_multipart_upload(
                Bucket=self.name, Key=key, UploadId=upload_id,
                MultipartUpload={"Parts": parts}, IfNoneMatch="*",
            )
        except ClientError as exc:
            await self._abort_upload(key, upload_id)
            if _code(exc) in _CONFLICT:
                return False
            raise _error(exc, f"upload {key}") from exc
        except (BotoCoreError, OSError) as exc:
            await self._abort_upload(key, upload_id)
            raise _error(exc, f"upload {key}") from exc
        except asyncio.CancelledError:
            await self._abort_upload(key, upload_id)
            raise
        return True

    async def _upload_parts(
        self, key: str, upload_id: str, path: Path, size: int
    ) -> list[Any]:
        parts = []
        for number, offset in enumerate(range(0, size, PART_BYTES), start=1):
            data = await asyncio.to_thread(_read_at, path, offset, PART_BYTES)
            resp = await self.client.upload_part(
                Bucket=self.name, Key=key, UploadId=upload_id, PartNumber=number, Body=data,
            )
            parts.append({"PartNumber": number, "ETag": resp["ETag"]})
        return parts

    async def _abort_upload(self, key: str, upload_id: str) -> None:
        try:
            await self.client.abort_multipart_upload(
                Bucket=self.name, Key=key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            # The bucket's lifecycle rule for incomplete uploads removes it later.
            logger.warning("cannot abort the upload of %s: %s", key, exc)

    async def delete(self, key: str) -> None:
        """Remove an object (nothing when there is none).

        Raises:
            StorageError: the request failed.
        """
        try:
            await self.client.delete_object(Bucket=self.name, Key=key)
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"delete {key}") from exc

    async def list(self, prefix: str) -> AsyncIterator[tuple[str, int]]:
        """Every key under ``prefix`` (full keys) with its size.

        Raises:
            StorageError: the request failed.
        """
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            async for page in paginator.paginate(Bucket=self.name, Prefix=prefix):
                for obj in page.get("Contents", []):
                    yield obj["Key"], int(obj["Size"])
        except (ClientError, BotoCoreError) as exc:
            raise _error(exc, f"list {prefix}") from exc


async def _nothing() -> AsyncIterator[bytes]:
    none: list[bytes] = []
    for chunk in none:
        yield chunk


def _read_at(path: Path, offset: int, size: int) -> bytes:
    with path.open("rb") as handle:
        handle.seek(offset)
        return handle.read(size)
