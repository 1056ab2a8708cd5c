"""``logger=trackio``: Hugging Face's local-first tracker, through ``trackio.init/log/finish``.

Its SQLite files go to ``logger.dir`` (default ``<results_dir>/trackio``; trackio reads
``TRACKIO_DIR``, so ``TRACKIO_DIR=results/runs/trackio trackio show`` opens them). A sweep is a
trackio group named after the sweep. The record JSON and the artifacts folder are trackio artifacts.
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from harness.errors import UserError


class TrackioTracker:
    name = "trackio"

    def __init__(self, spec, results_dir: Path):
        self.root = spec.folder(results_dir)
        os.environ["TRACKIO_DIR"] = str(self.root)  # read once, when trackio is first imported
        import trackio  # noqa: F401 — ImportError → "pip install 'tunebench[trackio]'"
        import trackio.utils

        if Path(trackio.utils.TRACKIO_DIR).resolve() != self.root:  # imported earlier in this process
            raise UserError(f"logger=trackio: trackio was loaded with TRACKIO_DIR={trackio.utils.TRACKIO_DIR} before "
                            f"tunebench could point it at {self.root}")

        self.trackio = trackio
        self.spec = spec
        self.run = None

    def check(self) -> None:
        from harness.paths import check_writable

        check_writable(str(self.root))

    def _quiet(self):
        return contextlib.redirect_stdout(sys.stderr)  # trackio prints "* Trackio metrics logged to …" on stdout

    def start(self, run_name: str, params: dict[str, str], *, parent: dict | None) -> dict:
        group = (parent or {}).get("group")
        with self._quiet():
            self.run = self.trackio.init(project=self.spec.project, name=run_name, group=group, config=params,
                                         auto_log_cpu=False, auto_log_gpu=False, embed=False)
        return {"run_id": str(getattr(self.run, "id", None) or self.run.name), "run_name": self.run.name,
                "dir": str(self.root), **({"group": group} if group else {})}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def finish(self, summary: dict[str, float], record_path: Path | None, artifacts_dir: Path | None, ok: bool) -> None:
        with self._quiet():
            if summary:
                self.run.log({f"final/{k}": v for k, v in summary.items()})
            if record_path is not None:
                self.trackio.log_artifact(str(record_path), name=f"record-{Path(record_path).stem}", type="record")
            if artifacts_dir is not None:
                self.trackio.log_artifact(str(artifacts_dir), name=f"artifacts-{Path(artifacts_dir).name}", type="model")
            self.run.finish()

    def open_group(self, name: str, params: dict[str, str]) -> dict:
        return {"group": name}

    def close_group(self, parent: dict, ok: bool) -> None:
        pass  # a trackio group is its runs' tag
