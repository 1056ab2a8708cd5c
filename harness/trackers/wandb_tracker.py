"""``logger=wandb``: Weights & Biases through ``wandb.init``; offline by default (``logger.mode``).

Offline, a run is files under ``logger.dir`` (default ``<results_dir>/wandb``) that need no network
or account, and ``wandb sync <dir>/wandb/offline-run-*`` uploads later. A sweep is a W&B group
named after the sweep. Final figures are the run's summary; the record JSON and the artifacts
folder are one W&B artifact of type ``tunebench-run``.
"""

from __future__ import annotations

import os
from pathlib import Path


class WandbTracker:
    name = "wandb"

    def __init__(self, spec, results_dir: Path):
        os.environ.setdefault("WANDB_SILENT", "true")  # no banner between the progress lines
        import wandb  # ImportError → "pip install 'tunebench[wandb]'"

        self.wandb = wandb
        self.spec = spec
        self.root = spec.folder(results_dir)
        self.run = None

    def check(self) -> None:
        from harness.paths import check_writable

        check_writable(str(self.root))

    def start(self, run_name: str, params: dict[str, str], *, parent: dict | None) -> dict:
        group = (parent or {}).get("group")
        self.run = self.wandb.init(mode=self.spec.mode, dir=str(self.root), project=self.spec.project, name=run_name,
                                   group=group, config=params, job_type="sweep-point" if group else "run",
                                   settings=self.wandb.Settings(console="off", x_disable_stats=True))
        return {"run_id": self.run.id, "mode": self.spec.mode, "dir": str(self.root), **({"group": group} if group else {})}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, summary: dict[str, float], record_path: Path | None, artifacts_dir: Path | None, ok: bool) -> None:
        self.run.summary.update(summary)
        if record_path is not None or artifacts_dir is not None:
            art = self.wandb.Artifact(f"run-{self.run.id}", type="tunebench-run")
            if record_path is not None:
                art.add_file(str(record_path), name="record.json")
            if artifacts_dir is not None:
                art.add_dir(str(artifacts_dir), name="artifacts")
            self.run.log_artifact(art)
        self.run.finish(exit_code=0 if ok else 1)
        self.wandb.teardown()  # wandb-core writes the offline file after finish() returns: wait for it

    def open_group(self, name: str, params: dict[str, str]) -> dict:
        return {"group": name}

    def close_group(self, parent: dict, ok: bool) -> None:
        pass  # a W&B group is its runs' field
