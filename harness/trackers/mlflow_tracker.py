"""``logger=mlflow``: runs in an MLflow tracking store through ``mlflow.MlflowClient``.

Default store: a SQLite database ``<results_dir>/mlflow.db`` (``mlflow ui --backend-store-uri
sqlite:///…/mlflow.db`` opens it) with artifacts in ``<results_dir>/mlartifacts``; ``logger.uri``
names a tracking server instead. A sweep is a parent run; each point is a child run
(the ``mlflow.parentRunId`` tag MLflow's UI nests by).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from harness.errors import UserError

PARAM_CHARS = 6000  # MLflow's limit on a param value
BATCH = 100  # params per log_batch call (MLflow's limit)


class MlflowTracker:
    name = "mlflow"

    def __init__(self, spec, results_dir: Path):
        import logging

        import mlflow  # noqa: F401 — ImportError → "pip install 'tunebench[mlflow]'"
        from mlflow import MlflowClient

        for name in ("mlflow", "alembic"):  # "Creating initial MLflow database tables…" on every new store
            logging.getLogger(name).setLevel(logging.WARNING)

        self.spec = spec
        self.local = spec.uri is None
        self.uri = spec.uri or f"sqlite:///{results_dir / 'mlflow.db'}"
        self.artifact_root = (results_dir / "mlartifacts").as_uri() if self.local else None
        if not self.local:  # a server that does not answer: fail in seconds, not after MLflow's 7 retries
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
        self.client = MlflowClient(tracking_uri=self.uri)
        self.run_id: str | None = None

    def check(self) -> None:
        try:
            self.experiment_id = self._experiment()
        except Exception as e:  # noqa: BLE001 — unreachable server, locked or foreign database
            raise UserError(f"logger=mlflow: tracking store {self.uri} did not answer "
                            f"({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})") from None

    def _experiment(self) -> str:
        found = self.client.get_experiment_by_name(self.spec.project)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(self.spec.project, artifact_location=self.artifact_root)

    def _params(self, run_id: str, params: dict[str, str]) -> None:
        from mlflow.entities import Param

        items = [Param(k, v[:PARAM_CHARS]) for k, v in params.items()]
        for i in range(0, len(items), BATCH):
            self.client.log_batch(run_id, params=items[i : i + BATCH])

    def start(self, run_name: str, params: dict[str, str], *, parent: dict | None) -> dict:
        tags = {"tunebench.run_id": params.get("run_id", run_name)}
        if parent and parent.get("run_id"):
            tags["mlflow.parentRunId"] = parent["run_id"]
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        self.run_id = run.info.run_id
        self._params(self.run_id, params)
        return {"run_id": self.run_id, "uri": self.uri, "experiment_id": self.experiment_id,
                **({"parent_run_id": parent["run_id"]} if parent and parent.get("run_id") else {})}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def finish(self, summary: dict[str, float], record_path: Path | None, artifacts_dir: Path | None, ok: bool) -> None:
        if summary:
            self.log_metrics(summary, 0)
        if record_path is not None:
            self.client.log_artifact(self.run_id, str(record_path))
        if artifacts_dir is not None:
            self.client.log_artifacts(self.run_id, str(artifacts_dir), artifact_path="artifacts")
        self.client.set_terminated(self.run_id, "FINISHED" if ok else "FAILED")

    def open_group(self, name: str, params: dict[str, str]) -> dict:
        run = self.client.create_run(self.experiment_id, run_name=f"sweep {name}", tags={"tunebench.sweep": name})
        self._params(run.info.run_id, params)
        return {"run_id": run.info.run_id, "group": name}

    def close_group(self, parent: dict, ok: bool) -> None:
        self.client.set_terminated(parent["run_id"], "FINISHED" if ok else "FAILED")

    def has_run(self, run_id: str) -> bool:
        """Backfill: is a run of this record's id already in the experiment?"""
        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`tunebench.run_id` = '{run_id}'",
                                        max_results=1)
        return bool(found)
