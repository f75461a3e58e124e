"""Storage URIs: a local path or `s3://bucket/prefix`, behind one small set of functions.

S3 goes through boto3. The endpoint comes from the standard `AWS_ENDPOINT_URL`, so MinIO and other
S3-compatible stores work unchanged; credentials come from boto3's usual chain (environment,
profile, instance role). Transient faults (5xx, throttling, dropped connections, timeouts) are
retried by botocore's `standard` retry mode with a capped number of attempts; every other S3
failure becomes a one-line `UserError` that names the URI.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from components.lib.errors import UserError

# minio:// is how the KFP launcher names artifacts in its own in-cluster store (MinIO, SeaweedFS
# from KFP 2.16): the S3 API at an endpoint of its own (backend/src/v2/objectstore/object_store.go,
# OpenBucket). gs:// is Google Cloud Storage, which these stages do not speak.
S3_SCHEMES = ("s3://", "minio://")
UNSUPPORTED_SCHEMES = ("gs://",)
DEFAULT_MAX_ATTEMPTS = 8
# botocore retries whole requests; a body cut off or garbled while streaming is retried here.
TRANSFER_ATTEMPTS = 3


def is_s3(uri: str) -> bool:
    if uri.startswith(UNSUPPORTED_SCHEMES):
        raise UserError(
            f"{uri}: gs:// storage cannot be read here; give the run an S3 or MinIO pipeline root"
            " (kubeflow.pipeline_root=s3://... or minio://...) and s3:// parameters"
        )
    return uri.startswith(S3_SCHEMES)


def join(uri: str, *parts: str) -> str:
    if is_s3(uri):
        return "/".join([uri.rstrip("/"), *(part.strip("/") for part in parts)])
    return str(Path(uri, *parts))


def split_s3(uri: str) -> tuple[str, str]:
    """`s3://bucket/some/key` (or `minio://...`) -> (`bucket`, `some/key`)."""
    scheme, _, rest = uri.partition("://")
    if scheme == "minio" and not os.environ.get("AWS_ENDPOINT_URL"):
        raise UserError(
            f"{uri}: a minio:// artifact lives in the cluster's KFP object store; set kubeflow.s3_endpoint to it"
            " (e.g. http://seaweedfs.kubeflow:9000) with its keys in the S3 Secret, or use kubeflow.pipeline_root=s3://..."
        )
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise UserError(f"{uri}: an S3 URI needs a bucket, as in s3://bucket/prefix")
    return bucket, key


@functools.cache
def s3_client():
    import boto3
    from botocore.config import Config

    config = Config(
        retries={
            "mode": os.environ.get("AWS_RETRY_MODE", "standard"),
            # total attempts, first one included (botocore's `max_attempts` would count retries only)
            "total_max_attempts": int(os.environ.get("AWS_MAX_ATTEMPTS", DEFAULT_MAX_ATTEMPTS)),
        },
        connect_timeout=10,
        read_timeout=60,
    )
    return boto3.client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
        region_name=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        config=config,
    )


@contextlib.contextmanager
def s3_errors(uri: str) -> Iterator[None]:
    """Turn an S3 failure into one line that names `uri` and says what to check."""
    from boto3.exceptions import S3UploadFailedError
    from botocore import exceptions

    endpoint = os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    try:
        yield
    except exceptions.NoCredentialsError:
        raise UserError(f"{uri}: no S3 credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY") from None
    except (exceptions.EndpointConnectionError, exceptions.ConnectionError) as error:
        raise UserError(
            f"{uri}: cannot reach the S3 endpoint {endpoint} after retries ({type(error).__name__}); check AWS_ENDPOINT_URL and the network"
        ) from None
    except exceptions.ClientError as error:
        raise UserError(describe_client_error(uri, error)) from None
    except S3UploadFailedError:  # boto3's wrapper of a PutObject or multipart upload that failed every retry
        raise UserError(f"{uri}: the upload failed after retries; check the network and the bucket, then run again") from None
    except exceptions.BotoCoreError as error:  # checksum mismatches, cut streams, timeouts that outlived the retries
        raise UserError(f"{uri}: the S3 transfer failed after retries ({type(error).__name__}); check the network and run again") from None


def describe_client_error(uri: str, error) -> str:
    code = str(error.response.get("Error", {}).get("Code", ""))
    if code == "NoSuchBucket":
        return f"{uri}: the bucket {split_s3(uri)[0]!r} does not exist; create it or fix the URI"
    if code in ("NoSuchKey", "404", "NotFound"):
        return f"{uri}: no such object; check the URI"
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return f"{uri}: access denied ({code}); check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and the bucket policy"
    message = error.response.get("Error", {}).get("Message", "")
    return f"{uri}: S3 request failed after retries: {code} {message}".strip()


def exists(uri: str) -> bool:
    if not is_s3(uri):
        return Path(uri).exists()
    from botocore import exceptions

    bucket, key = split_s3(uri)
    with s3_errors(uri):
        try:
            s3_client().head_object(Bucket=bucket, Key=key)
            return True
        except exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise


def list_files(uri: str) -> dict[str, int]:
    """Every file under the folder `uri`, as {path relative to `uri`: size in bytes}.

    On S3, keys ending in '/' are folder markers (console tools create them), not files.
    """
    if not is_s3(uri):
        root = Path(uri)
        if root.is_file():
            return {root.name: root.stat().st_size}
        return dict(sorted(local_files(root)))
    _, prefix = s3_folder(uri)
    return {key[len(prefix) :]: size for key, size in list_keys(uri).items() if not key.endswith("/")}


def local_files(root: Path) -> Iterator[tuple[str, int]]:
    """(relative name, size) of each regular file under `root`, symlinks to files included.

    Another process may be committing or deleting folders here (a registry, a checkpoint root):
    a file or folder that vanishes during the walk is skipped, not an error.
    """
    for folder, _, names in os.walk(root):  # os.walk skips folders that vanish; it follows no folder symlink
        for name in names:
            path = Path(folder, name)
            try:
                status = path.stat()
            except OSError:  # gone meanwhile, or a dangling or looping symlink: no file to list
                continue
            if stat.S_ISREG(status.st_mode):
                yield path.relative_to(root).as_posix(), status.st_size


def s3_folder(uri: str) -> tuple[str, str]:
    """The bucket and the key prefix of everything under the S3 folder `uri`."""
    bucket, key = split_s3(uri)
    return bucket, key.rstrip("/") + "/" if key else ""


def list_keys(uri: str) -> dict[str, int]:
    """Every key under the S3 folder `uri`, as stored (markers too), with its size."""
    bucket, prefix = s3_folder(uri)
    found: dict[str, int] = {}
    with s3_errors(uri):
        for page in s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = item["Size"]
    return found


def read_bytes(uri: str) -> bytes:
    if not is_s3(uri):
        try:
            return Path(uri).read_bytes()
        except FileNotFoundError:
            raise UserError(f"{uri}: no such file") from None
    bucket, key = split_s3(uri)

    def download() -> bytes:
        buffer = io.BytesIO()
        s3_client().download_fileobj(bucket, key, buffer)
        return buffer.getvalue()

    return with_transfer_retries(uri, download)


def with_transfer_retries(uri: str, transfer):
    """Run `transfer` again when a response body arrives cut off or garbled (checksum mismatch)."""
    from botocore import exceptions

    transient = (exceptions.FlexibleChecksumError, exceptions.IncompleteReadError, exceptions.ResponseStreamingError,
                 exceptions.ConnectionError, exceptions.ReadTimeoutError)  # fmt: skip
    with s3_errors(uri):
        for attempt in range(1, TRANSFER_ATTEMPTS + 1):
            try:
                return transfer()
            except transient:
                if attempt == TRANSFER_ATTEMPTS:
                    raise
                time.sleep(0.2 * 2**attempt)


def read_text(uri: str) -> str:
    return read_bytes(uri).decode("utf-8")


def write_bytes(uri: str, data: bytes) -> None:
    """Write a whole object; locally through a temporary file and a rename, so readers never see half."""
    if is_s3(uri):
        bucket, key = split_s3(uri)
        with s3_errors(uri):
            s3_client().put_object(Bucket=bucket, Key=key, Body=data)
        return
    path = Path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def write_text(uri: str, text: str) -> None:
    write_bytes(uri, text.encode("utf-8"))


def create_exclusive(uri: str, data: bytes) -> bool:
    """Create `uri` only if nothing is there yet; False if it already exists.

    Locally this is `O_CREAT | O_EXCL`; on S3 a conditional PUT with `If-None-Match: *`. A retried
    PUT whose first attempt did land answers 412, so the caller should make `data` unique and read
    it back when it gets False.
    """
    if not is_s3(uri):
        path = Path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        return True
    from botocore import exceptions

    bucket, key = split_s3(uri)
    with s3_errors(uri):
        try:
            s3_client().put_object(Bucket=bucket, Key=key, Body=data, IfNoneMatch="*")
            return True
        except exceptions.ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("PreconditionFailed", "ConditionalRequestConflict", "412", "409"):
                return False
            raise


def delete(uri: str) -> None:
    if not is_s3(uri):
        Path(uri).unlink(missing_ok=True)
        return
    bucket, key = split_s3(uri)
    with s3_errors(uri):
        s3_client().delete_object(Bucket=bucket, Key=key)


def download_file(uri: str, local_path: Path) -> None:
    local_path.parent.mkdir(parents=True, exist_ok=True)
    if not is_s3(uri):
        shutil.copyfile(uri, local_path)
        return
    bucket, key = split_s3(uri)
    with_transfer_retries(uri, lambda: s3_client().download_file(bucket, key, str(local_path)))


def upload_file(local_path: Path, uri: str) -> None:
    if not is_s3(uri):
        Path(uri).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(local_path, uri)
        return
    bucket, key = split_s3(uri)
    with_transfer_retries(uri, lambda: s3_client().upload_file(str(local_path), bucket, key))


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fingerprint(uri: str) -> str:
    """A content fingerprint of a file or folder, cheap enough to take before every run.

    Locally: sha256 over each file's relative name and sha256. On S3: sha256 over each object's
    key, size and ETag (S3's own content hash), so no data is downloaded. The same data in the
    same kind of store always gives the same fingerprint; a changed byte gives another.
    """
    digest = hashlib.sha256()
    if is_s3(uri):
        bucket, key = split_s3(uri)
        prefix = key.rstrip("/")
        with s3_errors(uri):
            pages = s3_client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
            items = [item for page in pages for item in page.get("Contents", [])]
        items = [item for item in items if item["Key"] == prefix or item["Key"].startswith(prefix + "/")]
        if not items:
            raise UserError(f"{uri}: no such object or prefix; check the URI")
        for item in sorted(items, key=lambda entry: entry["Key"]):
            digest.update(f"{item['Key'][len(prefix) :]}\0{item['Size']}\0{item['ETag']}\n".encode())
        return digest.hexdigest()
    root = Path(uri)
    if not root.exists():
        raise UserError(f"{uri}: no such file or folder")
    for name in list_files(uri):
        path = root / name if root.is_dir() else root
        digest.update(f"{name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def delete_tree(uri: str) -> None:
    """Remove a folder and everything under it.

    On S3 each key is deleted as listed: rebuilding it from a relative name would turn `a//b` into
    `a/b`, deleting the wrong object and leaving the right one.
    """
    if not is_s3(uri):
        shutil.rmtree(uri, ignore_errors=True)
        return
    bucket, _ = s3_folder(uri)
    with s3_errors(uri):
        for key in list_keys(uri):
            s3_client().delete_object(Bucket=bucket, Key=key)
