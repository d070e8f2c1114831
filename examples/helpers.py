"""What every example shares: its command line, the session (local mode or AWS), and where files go.

Local mode (the default) runs the image on this machine through the SDK's local mode: data and
outputs are file:// folders under --workdir. With --role, --bucket and --image-uri the same code
runs on SageMaker: data is uploaded under s3://BUCKET/examples/<image>/.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import boto3
import numpy as np
import sagemaker
from sagemaker.amazon.common import write_numpy_to_dense_tensor
from sagemaker.local import LocalSession
from sagemaker.s3 import S3Downloader

LOCAL_ROLE = "arn:aws:iam::111111111111:role/local-mode"  # local mode never assumes it

# The examples are named after their images (sklearn.py, xgboost.py, ...): run as scripts, their folder
# is first on sys.path and sklearn.py would stand in for scikit-learn. Every example imports this module
# before any such library, so from here on the folder is off the path.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != _HERE]


@dataclass
class Setup:
    session: sagemaker.Session
    role: str
    instance_type: str  # "local" in local mode
    image_uri: str
    workdir: Path
    bucket: str | None  # None in local mode
    prefix: str

    @property
    def local(self) -> bool:
        return self.bucket is None

    @property
    def on_aws(self) -> bool:
        """For deploy(wait=...) and transform(logs=...): a local endpoint answers as soon as deploy creates
        it (the wait would only sleep 30 s), and a local job prints its log as it runs (logs reads CloudWatch)."""
        return not self.local

    @property
    def code_location(self) -> str:
        """For script mode estimators. Local mode mounts source_dir and uploads nothing, but the SDK's
        deploy asks AWS for the default bucket (an STS call) unless code_location names one."""
        return f"s3://{self.bucket or 'local-mode-uploads-nothing'}/{self.prefix or 'local'}/code"

    def folder(self, name: str) -> Path:
        """A new local folder for one channel's (or one transform's) files."""
        folder = self.workdir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def upload(self, folder: Path) -> str:
        """The URI of a folder of data files as a channel or transform input: file:// here, S3 on AWS.
        (A file:// URI of one file would bring its whole folder: local mode mounts the folder.)"""
        if self.local:
            return folder.resolve().as_uri()
        return self.session.upload_data(str(folder), bucket=self.bucket, key_prefix=f"{self.prefix}/{folder.name}")

    def output(self, name: str) -> str:
        """A folder for model artifacts or transform results."""
        if self.local:
            folder = self.workdir / name
            folder.mkdir(parents=True, exist_ok=True)
            return folder.resolve().as_uri()
        return f"s3://{self.bucket}/{self.prefix}/{name}"

    def read(self, uri: str) -> str:
        """The text of an output file (a transform's <input name>.out)."""
        if self.local:
            return Path(urlparse(uri).path).read_text()
        return S3Downloader.read_file(uri, sagemaker_session=self.session)

    def batch_transform(self, estimator: sagemaker.estimator.EstimatorBase, file_name: str, content_type: str,
                        accept: str) -> list[str]:
        """A batch transform of the `batch` folder (split by line, answers assembled by line), then its model
        deleted: the non-blank lines of `<file_name>.out`."""
        # strategy spelled out: local mode misreads the image's /execution-parameters (README).
        transformer = estimator.transformer(1, self.instance_type, output_path=self.output("transform"),
                                            accept=accept, assemble_with="Line", strategy="MultiRecord")
        transformer.transform(self.upload(self.folder("batch")), content_type=content_type, split_type="Line",
                              logs=self.on_aws)
        lines = self.read(f"{transformer.output_path}/{file_name}.out").splitlines()
        self.session.delete_model(transformer.model_name)
        return [line for line in lines if line]


def parse_args(image: str, argv: list[str] | None, description: str | None,
               parser: argparse.ArgumentParser | None = None) -> tuple[Setup, argparse.Namespace]:
    parser = parser or argparse.ArgumentParser(description=description,
                                               formatter_class=argparse.RawDescriptionHelpFormatter)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--local", action="store_true", help="SageMaker local mode on this machine (the default)")
    where.add_argument("--role", help="run on SageMaker with this execution role ARN (with --bucket, --image-uri)")
    parser.add_argument("--bucket", help="S3 bucket for the data, models and results (with --role)")
    parser.add_argument("--image-uri", help=f"the image; local default sagemaker-{image}:latest (make image-{image})")
    parser.add_argument("--instance-type", default="ml.m5.large", help="with --role (default ml.m5.large)")
    parser.add_argument("--workdir", type=Path, help="local folder for data and results (default: a new temporary one)")
    args = parser.parse_args(argv)
    if args.role and not (args.bucket and args.image_uri):
        parser.error("--role needs --bucket and --image-uri (make push-<name> prints the URI)")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix=f"{image}-example-"))
    workdir.mkdir(parents=True, exist_ok=True)
    if args.role:
        setup = Setup(sagemaker.Session(), args.role, args.instance_type, args.image_uri, workdir, args.bucket,
                      f"examples/{image}")
    else:
        region = os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1"
        session = LocalSession(boto_session=boto3.Session(region_name=region))
        session.config = {"local": {"local_code": True}}
        setup = Setup(session, LOCAL_ROLE, "local", args.image_uri or f"sagemaker-{image}:latest", workdir, None, "")
    return setup, args


def write_csv(path: Path, *columns: np.ndarray) -> Path:
    """Rows of the given columns side by side, no header (label first, when one is given first)."""
    table = np.column_stack([np.asarray(c, dtype=np.float64).reshape(len(c), -1) for c in columns])
    np.savetxt(path, table, delimiter=",", fmt="%.10g")
    return path


def write_recordio(path: Path, features: np.ndarray, labels: np.ndarray | None = None) -> Path:
    """recordIO-protobuf, as the built-in estimators' record_set() writes it."""
    with open(path, "wb") as f:
        write_numpy_to_dense_tensor(f, np.asarray(features, np.float32),
                                    None if labels is None else np.asarray(labels, np.float32))
    return path


def builtin_hyperparameters(estimator_class: type, setup: Setup, feature_dim: int, mini_batch_size: int,
                            **settings: object) -> dict[str, str]:
    """What the SDK's built-in estimator (sagemaker.KMeans, ...) sends for these settings: a notebook
    written for it keeps its arguments. The built-in classes take no image_uri, so the examples pass
    these to the generic Estimator."""
    builtin = estimator_class(role=setup.role, instance_count=1, instance_type=setup.instance_type,
                              sagemaker_session=setup.session, data_location="s3://unused/", **settings)
    builtin.feature_dim, builtin.mini_batch_size = feature_dim, mini_batch_size
    return builtin.hyperparameters()
