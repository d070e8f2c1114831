"""Script-mode code on S3, against a real S3-compatible server (moto's, on 127.0.0.1) pointed at with
AWS_ENDPOINT_URL_S3: the download, each ClientError (no bucket, no key, no credentials), and credentials served
the way SageMaker serves a role's (AWS_CONTAINER_CREDENTIALS_*), from a local endpoint."""

from __future__ import annotations

import io
import json
import tarfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from common.errors import UserError
from common.paths import Paths
from common.script_mode import code

boto3 = pytest.importorskip("boto3")
moto_server = pytest.importorskip("moto.server")

# Where boto3 would otherwise find credentials or endpoints: never the machine's own, in these tests.
CLEARED = ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "AWS_ENDPOINT_URL",
           "AWS_REGION", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
           "AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_ROLE_ARN",
           "AWS_WEB_IDENTITY_TOKEN_FILE", "SAGEMAKER_REGION")
KEYS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


@contextmanager
def moto_s3() -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1; yields its endpoint URL."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


def use_s3(monkeypatch: pytest.MonkeyPatch, endpoint: str, home: Path, keys: bool = True) -> None:
    """This process (and the processes it starts) see the local server as S3, with dummy keys or none."""
    for name in CLEARED:
        monkeypatch.delenv(name, raising=False)
    settings = {"AWS_ENDPOINT_URL_S3": endpoint, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_CONFIG_FILE": str(home / "no-config"), "AWS_SHARED_CREDENTIALS_FILE": str(home / "no-creds"),
                "AWS_EC2_METADATA_DISABLED": "true", **(KEYS if keys else {})}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    if not keys:
        for name in KEYS:
            monkeypatch.delenv(name, raising=False)


def put_object(endpoint: str, bucket: str, key: str, data: bytes) -> str:
    """Upload with the test's own client (as the SDK's estimator.fit() uploads sourcedir.tar.gz)."""
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    if bucket not in [b["Name"] for b in client.list_buckets().get("Buckets", [])]:
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=bucket, Key=key, Body=data)
    return f"s3://{bucket}/{key}"


def tarball(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def endpoint() -> Iterator[str]:
    with moto_s3() as url:
        yield url


def test_code_downloads_from_s3_once_per_source(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3(monkeypatch, endpoint, tmp_path)
    uri = put_object(endpoint, "code-bucket", "job-1/source/sourcedir.tar.gz",
                     tarball({"train.py": "print(1)\n", "my_lib/__init__.py": "VALUE = 1\n"}))
    paths, target = Paths(tmp_path / "ml"), tmp_path / "ml" / "code"
    assert code.fetch(uri, paths, target, "us-east-1") == target
    assert (target / "train.py").read_text() == "print(1)\n" and (target / "my_lib" / "__init__.py").is_file()
    boto3.client("s3").delete_object(Bucket="code-bucket", Key="job-1/source/sourcedir.tar.gz")  # AWS_ENDPOINT_URL_S3
    assert code.fetch(uri, paths, target) == target  # a worker after the parent: nothing downloaded again


@pytest.mark.parametrize(("uri", "expected"), [
    ("s3://no-such-bucket/job/source/sourcedir.tar.gz", "The bucket no-such-bucket does not exist (NoSuchBucket)"),
    ("s3://code-bucket/no/such/sourcedir.tar.gz", "The bucket code-bucket has no object no/such/sourcedir.tar.gz "
                                                  "(NoSuchKey)"),
    ("s3://code-bucket", "is not an s3://bucket/key URI"),
])
def test_a_missing_bucket_or_key_is_a_client_error_naming_it(endpoint: str, tmp_path: Path, uri: str, expected: str,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3(monkeypatch, endpoint, tmp_path)
    put_object(endpoint, "code-bucket", "other", b"")
    with pytest.raises(UserError) as refused:
        code.fetch(uri, Paths(tmp_path), tmp_path / "code")
    assert expected in refused.value.message and uri in refused.value.message


def test_no_credentials_is_a_client_error(endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3(monkeypatch, endpoint, tmp_path, keys=False)
    uri = put_object(endpoint, "code-bucket", "job-2/sourcedir.tar.gz", tarball({"train.py": ""}))
    with pytest.raises(UserError, match="No AWS credentials to download the code from s3://code-bucket/job-2/"):
        code.fetch(uri, Paths(tmp_path), tmp_path / "code")


class _CredentialsEndpoint(BaseHTTPRequestHandler):
    """What the ECS / SageMaker credentials endpoint answers: the role's temporary keys."""

    requests: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).requests.append((self.path, self.headers.get("Authorization")))
        expiration = (datetime.now(timezone.utc) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        body = json.dumps({"AccessKeyId": "ASIAROLEKEY", "SecretAccessKey": "role-secret", "Token": "role-token",
                           "Expiration": expiration, "RoleArn": "arn:aws:iam::123456789012:role/SageMakerRole"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        return None


@contextmanager
def credentials_endpoint() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _CredentialsEndpoint)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_credentials_come_from_the_container_credentials_endpoint(endpoint: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    use_s3(monkeypatch, endpoint, tmp_path, keys=False)
    uri = put_object(endpoint, "code-bucket", "job-3/sourcedir.tar.gz", tarball({"serve.py": "x = 1\n"}))
    _CredentialsEndpoint.requests.clear()
    with credentials_endpoint() as url:
        # SageMaker sets the RELATIVE_URI (on 169.254.170.2); botocore allows the FULL_URI form on 127.0.0.1.
        monkeypatch.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"{url}/v2/credentials/0f1e2d3c")
        monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "task-token")
        folder = code.fetch(uri, Paths(tmp_path), tmp_path / "code")
    assert (folder / "serve.py").read_text() == "x = 1\n"
    assert _CredentialsEndpoint.requests == [("/v2/credentials/0f1e2d3c", "task-token")]
