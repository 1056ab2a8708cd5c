"""One self-describing JSON record per run: its type, its schema, the one builder and the one writer.

The record (``schema_version`` 2) is the ``Record`` TypedDict below; ``harness/data/record.schema.json``
is the same contract as a JSON Schema, shipped in the package, and every write is checked
against it. ``build_record`` makes the record of a run about to start (what ran it, versions and
commit: ``harness/provenance.py``), ``finished`` ends it (status, error, last figures) and
``write_record`` writes it atomically (``harness/atomic.py``): ``run.execute``, the watchdog's
hard stop, a sweep parent whose child left nothing, and an FSDP job all go through them. Readers
go through ``read_record`` (which upgrades version-1 records in memory) and the accessor
``model_arch``.

Version 2 against 1: ``config`` is exactly the ``RunSpec`` that ran; the architecture measured
when the model loaded is ``model_arch`` (version 1 overwrote ``config.model.arch`` with it).
"""

from __future__ import annotations

import copy
import json
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from harness import schema
from harness.atomic import jsonable, write_json
from harness.provenance import Provenance, now, provenance

if TYPE_CHECKING:
    from harness.spec import RunSpec

SCHEMA_VERSION = 2
SCHEMA_FILE = Path(__file__).resolve().parent / "data" / "record.schema.json"
STATUSES = ("ok", "oom", "error", "timeout")
TRACEBACK_TAIL = 3000  # characters of traceback kept in an error record


class ErrorInfo(TypedDict):
    type: str
    message: str  # at most 1000 characters
    traceback: str  # the last TRACEBACK_TAIL characters; "" when there is none (a killed child)


class Artifact(TypedDict, total=False):
    kind: str  # adapter | model
    path: str  # relative to the record's directory
    bytes: int
    files: dict[str, int]


class Record(TypedDict, total=False):
    schema_version: int
    run_id: str
    status: str  # STATUSES
    error: ErrorInfo | None
    config: dict  # RunSpec.to_dict(): the spec that ran
    model_arch: dict  # measured at load (models.arch_of); absent when the run died before loading
    model_identity: dict  # {"id", "source", "revision" | "sha256" | "file"}
    metrics: dict[str, Any]  # peak_memory_gb, tokens_per_s, task_score, …: see the schema
    hardware: dict[str, Any]  # measure.hardware(device)
    provenance: Provenance
    artifacts: list[Artifact]
    sweep: dict  # {"name"}: the sweep this run is a point of
    recorded_by: str  # "sweep" | "watchdog": someone else wrote this run's record
    warnings: list[str]
    execution: dict  # how a sweep ran the point (issue 15)
    tracker: dict  # logger=…: {"name", "run_id", …} of the run in the experiment tracker (harness/trackers/)


def record_path(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / f"{run_id}.json"


# ---------------------------------------------------------------- build, finish, write


def build_record(spec: "RunSpec", device: str, *, sweep: str | None = None, started_at: str | None = None,
                 execution: dict | None = None, tracker: dict | None = None, search: dict | None = None) -> Record:
    """The record of a run about to start: status ``error`` until someone says otherwise.
    ``execution``: how a sweep ran the point (its slot, concurrency; harness/sweep/slots.py);
    ``tracker``: its run in an experiment tracker (harness/trackers/);
    ``search``: the study and trial it was for (harness/search/)."""
    from harness.measure import hardware

    record: Record = {
        "schema_version": SCHEMA_VERSION,
        "run_id": spec.run_id,
        "status": "error",
        "error": None,
        "config": spec.to_dict(),
        "metrics": {},
        "hardware": hardware(device),
        "provenance": provenance(started_at or now()),
        "artifacts": [],
    }
    if sweep:
        record["sweep"] = {"name": sweep}
    if execution:
        record["execution"] = execution
    if tracker:
        record["tracker"] = tracker
    if search:
        record["search"] = search
    return record


def error_info(exc: BaseException | None = None, *, type: str | None = None, message: str = "", tail: str = "") -> ErrorInfo:
    """From an exception, or from what a parent saw of a child that left nothing (type, message, log tail)."""
    if exc is not None:
        tail = "".join(traceback.format_exception(exc))
        type, message = exc.__class__.__name__, str(exc)
    return {"type": type or "Error", "message": message.strip()[:1000], "traceback": tail[-TRACEBACK_TAIL:]}


def finished(record: Record, status: str, *, error: ErrorInfo | None = None, metrics: dict | None = None,
             recorded_by: str | None = None) -> Record:
    """A copy of ``record`` ended with ``status``: the live one may still be in use by the run."""
    assert status in STATUSES, status
    out: Record = copy.deepcopy(record)
    out["status"] = status
    out["error"] = error
    out["metrics"].update(metrics or {})
    out["provenance"]["finished_at"] = now()
    if recorded_by:
        out["recorded_by"] = recorded_by
    return out


def add_warning(record: Record, message: str) -> None:
    """Something went wrong that did not spoil the measurement (an artifact not saved, …)."""
    record.setdefault("warnings", []).append(message)


def validate(record: dict) -> list[str]:
    """Violations of the shipped schema ([] when the record conforms), of the record as written
    (tuples as lists, NaN as null)."""
    return schema.errors(jsonable(record), _schema())


def write_record(results_dir: str | Path, record: Record) -> Path:
    """The one writer. A record that breaks the schema is still written (the measurement is worth
    more than its shape) with the violations in ``warnings`` and a line on stderr."""
    assert record["status"] in STATUSES, record["status"]
    record.setdefault("schema_version", SCHEMA_VERSION)
    problems = validate(record) if record["schema_version"] == SCHEMA_VERSION else []
    if problems:
        print(f"tunebench: warning: record {record['run_id']} breaks the schema: {problems[0]}", file=sys.stderr)
        record.setdefault("warnings", []).extend(f"schema: {p}" for p in problems[:5])
    return write_json(record_path(results_dir, record["run_id"]), record)


_SCHEMA: dict | None = None


def _schema() -> dict:
    global _SCHEMA
    if _SCHEMA is None:
        _SCHEMA = schema.load(SCHEMA_FILE)
    return _SCHEMA


# ---------------------------------------------------------------- read and access


def upgrade(data: dict) -> Record:
    """A version-1 record in the version-2 shape, in memory: the measured architecture, which
    version 1 wrote over ``config.model.arch``, is also ``model_arch``. The file is not changed."""
    if data.get("schema_version", 1) < 2 and "model_arch" not in data:
        arch = ((data.get("config") or {}).get("model") or {}).get("arch")
        if arch:
            data["model_arch"] = arch
    return data  # type: ignore[return-value]


def read_record(path: str | Path) -> Record:
    """Parse a record (JSON only, never pickle), version 1 or 2; ValueError names what is wrong."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path.name}: not a readable JSON record ({e})") from None
    if not isinstance(data, dict) or "run_id" not in data or data.get("status") not in STATUSES:
        raise ValueError(f"{path.name}: not a tunebench run record (no run_id/status)")
    if data.get("schema_version", 1) > SCHEMA_VERSION:
        raise ValueError(f"{path.name}: schema_version {data['schema_version']} is newer than this tunebench reads ({SCHEMA_VERSION})")
    return upgrade(data)


def model_arch(record: dict) -> dict:
    """The architecture the run loaded ({} when it died first); version 1 kept it in config."""
    return upgrade(record).get("model_arch") or {}
