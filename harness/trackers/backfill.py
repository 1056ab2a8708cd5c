"""``harness results --to <tracker> DIR``: records made earlier (or without ``logger=``) into a tracker.

Each record becomes one tracker run, as if it had been logged live: its config as params, its
logged training losses at their steps (``metrics.train_losses``; tokens/s per step was not kept),
its final figures and the record JSON (and artifacts folder) as artifacts. A sweep's records go
under one parent per sweep. Records are read, never changed. A record already in the store is
skipped: MLflow is asked for its run id; for the others, a record logged live to the same folder
says so in its ``tracker`` section.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.trackers import Tracking, final_metrics, flat_params, make


def backfill(spec, directory: str | Path, recs: list[dict]) -> tuple[int, int]:
    """Log ``recs`` (``harness.results.records(directory)``: each with ``_path`` below ``directory``);
    returns (records logged, records skipped as already there)."""
    directory = Path(directory)
    tracker = make(spec, directory)
    if tracker is None:
        return 0, 0
    parents: dict[str, dict] = {}
    logged = skipped = 0
    for rec in recs:
        live = rec.get("tracker") or {}  # logged live to this very store: already there
        if live.get("name") == spec.name and live.get("dir") and Path(live["dir"]) == spec.folder(directory):
            skipped += 1
            continue
        if hasattr(tracker, "has_run") and tracker.has_run(rec["run_id"]):
            skipped += 1
            continue
        tracker = make(spec, directory)  # a fresh adapter per run: some libraries keep one active run
        sweep = (rec.get("sweep") or {}).get("name")
        if sweep and sweep not in parents:
            parents[sweep] = tracker.open_group(sweep, {"sweep": sweep, "backfilled_from": str(directory)})
        params = {**flat_params(rec.get("config") or {}), "run_id": rec["run_id"]}
        info = tracker.start(rec["run_id"], params, parent=parents.get(sweep) if sweep else None)
        run = Tracking(tracker, {"name": spec.name, **info})
        losses = (rec.get("metrics") or {}).get("train_losses") or []
        every = max(1, int(((rec.get("config") or {}).get("train") or {}).get("log_every") or 1))
        for i, loss in enumerate(losses):
            if isinstance(loss, (int, float)):
                tracker.log_metrics({"train/loss": float(loss)}, (i + 1) * every)
        path = directory / rec["_path"]
        artifacts = path.parent / "artifacts" / rec["run_id"]
        tracker.finish(final_metrics(rec), path, artifacts if artifacts.is_dir() else None, rec.get("status") == "ok")
        logged += 1
    for sweep, parent in parents.items():
        tracker.close_group(parent, ok=True)
    os.environ.pop("TUNEBENCH_TRACKER_PARENT", None)
    return logged, skipped
