"""Upstream sources: a local folder or an S3 prefix, listed with a content tag per object.

The tag is the S3 ETag, or for local files an MD5 of the bytes (what S3 reports for single-part uploads),
so a snapshot can tell new and changed objects from ones it already holds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from reprolab.errors import SourceError


@dataclass(frozen=True)
class ObjectInfo:
    key: str  # path relative to the source root, with forward slashes
    tag: str
    size: int


class Source(Protocol):
    url: str

    def list_objects(self) -> dict[str, ObjectInfo]: ...

    def download(self, key: str, dest: Path) -> None: ...


def md5_of_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LocalSource:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.url = str(root)

    def list_objects(self) -> dict[str, ObjectInfo]:
        if not self.root.is_dir():
            raise SourceError(f"source folder '{self.root}' does not exist or is not a folder")
        objects = {}
        for path in sorted(self.root.rglob("*")):
            if path.is_symlink() and not path.exists():
                raise SourceError(f"cannot read '{path}': it is a broken link")
            if not path.is_file():
                continue
            key = path.relative_to(self.root).as_posix()
            try:
                objects[key] = ObjectInfo(key, md5_of_file(path), path.stat().st_size)
            except OSError as e:
                raise SourceError(f"cannot read '{path}': {e.strerror}") from e
        return objects

    def download(self, key: str, dest: Path) -> None:
        try:
            dest.write_bytes((self.root / key).read_bytes())
        except OSError as e:
            raise SourceError(f"cannot read '{self.root / key}': {e.strerror}") from e


class S3Source:
    def __init__(self, url: str, endpoint_url: str | None = None):
        if not url.startswith("s3://"):
            raise SourceError(f"'{url}' is not an s3:// URL")
        bucket, _, prefix = url[len("s3://") :].partition("/")
        if not bucket:
            raise SourceError(f"'{url}' names no bucket")
        self.url = url
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self._client = _s3_client(endpoint_url)

    def list_objects(self) -> dict[str, ObjectInfo]:
        import botocore.exceptions

        objects = {}
        try:
            pages = self._client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix
            )
            for page in pages:
                for item in page.get("Contents", []):
                    key = item["Key"][len(self.prefix) :]
                    if key and not key.endswith("/"):
                        objects[key] = ObjectInfo(key, item["ETag"].strip('"'), item["Size"])
        except botocore.exceptions.ClientError as e:
            raise SourceError(f"cannot list {self.url}: {e.response['Error'].get('Message', e)}") from e
        except botocore.exceptions.BotoCoreError as e:
            raise SourceError(f"cannot reach {self.url}: {e}") from e
        if not objects:
            raise SourceError(f"source {self.url} holds no objects")
        return objects

    def download(self, key: str, dest: Path) -> None:
        import botocore.exceptions

        try:
            self._client.download_file(self.bucket, self.prefix + key, str(dest))
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError) as e:
            raise SourceError(f"cannot download {self.url}/{key}: {e}") from e


def _s3_client(endpoint_url: str | None):
    import boto3
    from botocore.config import Config

    # S3-compatible stores (MinIO, moto) reject the checksums newer boto3 sends by default.
    os.environ.setdefault("AWS_REQUEST_CHECKSUM_CALCULATION", "WHEN_REQUIRED")
    os.environ.setdefault("AWS_RESPONSE_CHECKSUM_VALIDATION", "WHEN_REQUIRED")
    return boto3.client(
        "s3",
        endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(retries={"max_attempts": 5, "mode": "standard"}, connect_timeout=10, read_timeout=60),
    )


def open_source(url: str, endpoint_url: str | None = None) -> Source:
    """A source from params.fetch.source: `s3://bucket/prefix` or a local folder."""
    if url.startswith("s3://"):
        return S3Source(url, endpoint_url)
    if "://" in url:
        raise SourceError(f"unsupported source '{url}': use a local folder or an s3:// prefix")
    return LocalSource(Path(url))
