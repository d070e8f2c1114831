"""Downloading the code from S3 with boto3 and the container's credentials: boto3's standard chain (on
SageMaker, the job's or endpoint's role through AWS_CONTAINER_CREDENTIALS_RELATIVE_URI), its endpoint
settings (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL) and region (AWS_REGION, else the SDK's sagemaker_region)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from common.errors import UserError

CHUNK = 1 << 20


def split_uri(uri: str) -> tuple[str, str]:
    """('bucket', 'key') of s3://bucket/key; a ClientError for a URI without both."""
    bucket, _, key = uri[len("s3://"):].partition("/")
    if not bucket or not key:
        raise UserError(f"The code location {uri} is not an s3://bucket/key URI of a sourcedir.tar.gz.")
    return bucket, key


def download(uri: str, target: Path, region: str | None = None) -> None:
    """s3://bucket/key to the file `target`; every failure is a ClientError naming the URI and the reason."""
    try:
        import boto3
        from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError
    except ImportError:
        raise UserError(f"The code is at {uri}, but this image has no boto3 to download it from S3: install boto3 "
                        "in the image, or pass the code as a 'code' channel or a local folder.") from None
    bucket, key = split_uri(uri)
    region = os.environ.get("AWS_REGION") or region  # the training toolkit's order
    try:
        response = boto3.session.Session(region_name=region or None).client("s3").get_object(Bucket=bucket, Key=key)
        with open(target, "wb") as out:
            shutil.copyfileobj(response["Body"], out, CHUNK)
    except NoCredentialsError:
        raise UserError(f"No AWS credentials to download the code from {uri}: on SageMaker they come from the role "
                        "(AWS_CONTAINER_CREDENTIALS_RELATIVE_URI); elsewhere set AWS_ACCESS_KEY_ID and "
                        "AWS_SECRET_ACCESS_KEY, a profile, or AWS_CONTAINER_CREDENTIALS_FULL_URI.") from None
    except ClientError as exc:
        raise UserError(_client_error(uri, bucket, key, exc.response.get("Error", {}))) from None
    except BotoCoreError as exc:  # credentials that could not be fetched, an endpoint that does not answer, ...
        raise UserError(f"Could not download the code from {uri}: {exc}.") from None


def _client_error(uri: str, bucket: str, key: str, error: dict) -> str:
    code = str(error.get("Code", ""))
    if code == "NoSuchBucket":
        return f"The bucket {bucket} does not exist (NoSuchBucket), so the code at {uri} cannot be downloaded."
    if code in ("NoSuchKey", "404"):
        return f"The bucket {bucket} has no object {key} (NoSuchKey), so the code at {uri} cannot be downloaded."
    if code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken"):
        return (f"S3 refused to give the code at {uri} ({code}): the credentials in use (on SageMaker, the "
                "role's) may not read it.")
    return f"Could not download the code from {uri}: {code or 'error'}: {error.get('Message', '')}".rstrip(": ") + "."
