"""Multi-model endpoints (SAGEMAKER_MULTI_MODEL=true): models loaded by name, the same set in every worker.

The loaded set lives in a folder that the server's parent creates before it forks the workers (`Registry`,
common/serving/model_set.py): one JSON record per model, changed only under an exclusive file lock, and a
generation number bumped on every change. Each worker (`Models`) keeps its own copy of the models it is asked
for: the worker answering
POST /models loads the model there and then, any other worker on its first invocation there. A copy goes as
soon as its record is gone or replaced: each invocation reads the record, and a sweep thread in every worker
follows the generation and acknowledges each one it has caught up with, so DELETE /models/<name> returns once
every worker has let the model go.

A model counts for max(its files' size, the resident memory its load added) in each worker. A load that would
take the total over the budget (SAGEMAKER_MULTI_MODEL_MEMORY_FRACTION of the container's memory limit, 0.8 by
default) or the count over SAGEMAKER_MAX_MODELS is refused with 507 (`Limits`, common/serving/memory.py), and
SageMaker unloads others to make room.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import shutil
import sys
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from common.algorithm import Algorithm
from common.errors import UserError
from common.serving.endpoint import Endpoint, load_endpoint
from common.serving.memory import Limits, folder_bytes, megabytes, release_memory, rss_bytes
from common.serving.model_set import Record, Registry

log = logging.getLogger(__name__)
ENABLED_VAR = "SAGEMAKER_MULTI_MODEL"
PAGE_SIZE = 100  # the most models one GET /models lists, and how many when `limit` is missing or out of range
SWEEP_SECONDS = 0.1
UNLOAD_WAIT_SECONDS = 10.0
ARCHIVES = (".tar.gz", ".tgz")
LOADING_LOCKS = 64


def multi_model_enabled() -> bool:
    return os.environ.get(ENABLED_VAR, "").strip().lower() == "true"


@dataclass(frozen=True)
class Copy:
    record_id: str
    endpoint: Endpoint
    generation: int  # no later than the one its record was read at


class Models:
    """This worker's side of the loaded set: load, unload, list, and the endpoint that answers a model."""

    def __init__(self, algorithm: type[Algorithm], registry: Registry, limits: Limits) -> None:
        self.algorithm, self.registry, self.limits = algorithm, registry, limits
        self._copies: dict[str, Copy] = {}
        self._copies_lock = threading.Lock()
        self._sync_lock = threading.Lock()
        self._synced = -1
        self._loading_locks = [threading.Lock() for _ in range(LOADING_LOCKS)]  # one load of a name at a time

    # ---- the API ----------------------------------------------------------------------------
    def load(self, name: str, url: str) -> Record:
        """Loads take turns: the lock is held while the model loads, so that the budget check stays true."""
        folder = _model_folder(url)
        with self.registry.locked():
            if self.registry.get(name) is not None:
                raise UserError(f"Model {name} is already loaded; unload it before loading it again.", status=409)
            loaded = self.registry.records()
            self.limits.check_count(name, len(loaded))
            record_id = uuid.uuid4().hex
            path, extracted = _unpacked(folder, self.registry.extracted_dir / record_id)
            try:
                endpoint, size = self._load_within_budget(name, path, loaded)
                record = Record(name, url, str(path), size, record_id, extracted)
                generation = self.registry.add(record)
            except BaseException:
                if extracted:
                    shutil.rmtree(path, ignore_errors=True)
                release_memory()
                raise
            with self._copies_lock:
                self._copies[name] = Copy(record_id, endpoint, generation)
        log.info("Loaded model %s from %s (about %s MB per worker).", name, url, megabytes(size))
        return record

    def _load_within_budget(self, name: str, path: Path, loaded: list[Record]) -> tuple[Endpoint, int]:
        """The model and its size, checked against the budget before loading (its files) and after (what the
        load took). A load that imports libraries (the first of its kind in this worker) is counted by its files
        only: the libraries stay when the model goes."""
        size = folder_bytes(path)
        self.limits.check_memory(name, size, loaded)
        before, modules = rss_bytes(), len(sys.modules)
        endpoint = self._load_copy(name, path, failure_status=400)
        if len(sys.modules) == modules:
            size = max(size, rss_bytes() - before)
        try:
            self.limits.check_memory(name, size, loaded)
        except UserError:
            del endpoint  # the traceback keeps this frame, and with it the model, alive
            raise
        return endpoint, size

    def unload(self, name: str) -> Record:
        with self.registry.locked():
            removed = self.registry.remove(name)
        if removed is None:
            raise _not_loaded(name)
        record, generation = removed
        if record.extracted:
            shutil.rmtree(record.path, ignore_errors=True)
        self.sync()
        self.registry.wait_for_workers(generation, UNLOAD_WAIT_SECONDS)
        log.info("Unloaded model %s.", name)
        return record

    def describe(self, name: str) -> Record:
        record = self.registry.get(name)
        if record is None:
            raise _not_loaded(name)
        return record

    def page(self, token: str | None, limit: int) -> tuple[list[Record], str | None]:
        """Up to `limit` models after the one `token` names, and the token for the next page (None: no more)."""
        records = self.registry.records()
        if token:
            after = _token_name(token)
            records = [record for record in records if record.name > after]
        page = records[:limit]
        return page, (_name_token(page[-1].name) if len(records) > limit else None)

    def endpoint(self, name: str) -> Endpoint:
        """What answers /models/<name>/invoke in this worker, loaded here on first use."""
        record = self.registry.get(name)
        if record is None:
            raise _not_loaded(name)
        copy = self._copies.get(name)
        if copy is not None and copy.record_id == record.id:
            return copy.endpoint
        with self._loading_locks[hash(name) % LOADING_LOCKS]:
            return self._load_on_first_use(name)

    # ---- keeping this worker's copies in step -----------------------------------------------
    def sync(self) -> None:
        """Drop the copies whose record is gone or replaced, then acknowledge the generation."""
        with self._sync_lock:
            generation = self.registry.generation()
            if generation == self._synced:
                return
            current = {record.name: record.id for record in self.registry.records()}
            with self._copies_lock:
                stale = [name for name, copy in self._copies.items()
                         if copy.generation <= generation and current.get(name) != copy.record_id]
                dropped = [self._copies.pop(name) for name in stale]
            if dropped:
                del dropped
                release_memory()
            self._synced = generation
            self.registry.acknowledge(generation)

    def start_sweeping(self, interval: float = SWEEP_SECONDS) -> threading.Thread:
        def sweep() -> None:
            while self.registry.root.is_dir():
                try:
                    self.sync()
                except FileNotFoundError:
                    return  # the server is shutting down and removed the folder
                except Exception:  # noqa: BLE001 - the sweep must outlive any one failure
                    log.exception("Syncing the loaded models failed.")
                time.sleep(interval)

        thread = threading.Thread(target=sweep, name="model-sweep", daemon=True)
        thread.start()
        return thread

    def _load_on_first_use(self, name: str) -> Endpoint:
        generation = self.registry.generation()  # read before the record: see Copy.generation
        record = self.registry.get(name)
        if record is None:
            raise _not_loaded(name)
        copy = self._copies.get(name)
        if copy is not None and copy.record_id == record.id:
            return copy.endpoint  # another thread loaded it while this one waited
        try:
            endpoint = self._load_copy(name, Path(record.path), failure_status=500)
        except UserError:
            if self.registry.get(name) is None:
                raise _not_loaded(name) from None  # unloaded while loading: its files may be gone
            raise
        with self._copies_lock:
            replaced = self._copies.get(name)
            self._copies[name] = Copy(record.id, endpoint, generation)
        if replaced is not None:  # the model was reloaded under the same name
            del replaced
            release_memory()
        # An unload that the sweep acknowledged before the line above is seen here.
        now = self.registry.get(name)
        if now is None or now.id != record.id:
            with self._copies_lock:
                if self._copies.get(name) is not None and self._copies[name].record_id == record.id:
                    del self._copies[name]
            del endpoint
            release_memory()
            raise _not_loaded(name)
        log.info("Loaded model %s from %s in this worker, on its first invocation here.", name, record.url)
        return endpoint

    def _load_copy(self, name: str, path: Path, failure_status: int) -> Endpoint:
        try:
            endpoint = load_endpoint(self.algorithm, path)
            endpoint.warm_up()
            return endpoint
        except MemoryError:
            raise UserError(f"Model {name} does not fit in the memory left; unload models first.",
                            status=507) from None
        except UserError as exc:
            problem = exc.message
        except Exception as exc:  # noqa: BLE001 - any loader failure is the model's, said clearly
            log.exception("Loading model %s from %s failed.", name, path)
            problem = f"{type(exc).__name__}: {_first_line(str(exc))}"
        raise UserError(f"Model {name} could not be loaded from {path}: {problem}", status=failure_status)


def parse_load_request(body: bytes) -> tuple[str, str]:
    """POST /models' body: {"model_name": ..., "url": ...}."""
    try:
        request = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        request = None
    if not isinstance(request, dict):
        raise UserError('POST /models takes a JSON object: {"model_name": "<name>", "url": "<model folder>"}.')
    fields = {}
    for field in ("model_name", "url"):
        value = request.get(field)
        if not isinstance(value, str) or not value.strip():
            raise UserError(f'POST /models needs "{field}", a non-empty string; got {json.dumps(value)}.')
        fields[field] = value
    return fields["model_name"], fields["url"]


def page_limit(text: str | None) -> int:
    """GET /models' `limit`: 1 to 100; missing or outside that, 100."""
    if text is None or text == "":
        return PAGE_SIZE
    try:
        limit = int(text)
    except ValueError:
        raise UserError(f"limit must be a whole number of models, not {text!r}.") from None
    return limit if 1 <= limit <= PAGE_SIZE else PAGE_SIZE


def _model_folder(url: str) -> Path:
    folder = Path(url)
    if not folder.is_dir():
        problem = "is not a folder" if folder.exists() else "does not exist"
        raise UserError(f"The model url {url} {problem} in the container; give the folder the model's files "
                        "(or its model.tar.gz) are in.")
    return folder


def _unpacked(folder: Path, destination: Path) -> tuple[Path, bool]:
    """The folder to load from: `folder`, or `destination` when `folder` holds nothing but a model.tar.gz."""
    entries = [path for path in folder.iterdir() if not path.name.startswith(".")]
    if len(entries) != 1 or not entries[0].is_file() or not entries[0].name.endswith(ARCHIVES):
        return folder, False
    destination.mkdir(parents=True)
    try:
        with tarfile.open(entries[0]) as archive:
            archive.extractall(destination, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
    except (tarfile.TarError, OSError) as exc:
        shutil.rmtree(destination, ignore_errors=True)
        raise UserError(f"Cannot extract {entries[0]}: {exc}") from None
    return destination, True


def _not_loaded(name: str) -> UserError:
    return UserError(f"Model {name} is not loaded.", status=404)


def _name_token(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _token_name(token: str) -> str:
    try:
        return base64.b64decode(token + "=" * (-len(token) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise UserError(f"next_page_token {token!r} is not one GET /models returned.") from None


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "..."
