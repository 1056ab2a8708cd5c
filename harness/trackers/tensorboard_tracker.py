"""``logger=tensorboard``: TensorBoard event files through ``torch.utils.tensorboard.SummaryWriter``.

One folder per run under ``logger.dir`` (default ``<results_dir>/tensorboard``): ``<run_id>/``,
or ``<sweep>/<run_id>/`` for a sweep's point, so ``tensorboard --logdir`` groups a sweep. The config
is the HParams plugin's params (with the final figures as its metrics) and a ``config`` text; TensorBoard
keeps no files, so the record's JSON is a ``record`` text and the artifacts folder's path an ``artifacts`` text.
"""

from __future__ import annotations

import json
from pathlib import Path


class TensorboardTracker:
    name = "tensorboard"

    def __init__(self, spec, results_dir: Path):
        import tensorboard  # noqa: F401 — ImportError → "pip install 'tunebench[tensorboard]'"
        from torch.utils.tensorboard import SummaryWriter

        self.root = spec.folder(results_dir)
        self.writer_cls = SummaryWriter
        self.writer = None
        self.params: dict[str, str] = {}

    def check(self) -> None:
        from harness.paths import check_writable

        check_writable(str(self.root))

    def start(self, run_name: str, params: dict[str, str], *, parent: dict | None) -> dict:
        group = (parent or {}).get("group")
        logdir = self.root / group / run_name if group else self.root / run_name
        self.writer = self.writer_cls(log_dir=str(logdir))
        self.params = params
        self.writer.add_text("config", "```\n" + json.dumps(params, indent=1) + "\n```")
        return {"run_id": str(logdir.relative_to(self.root)), "dir": str(self.root),
                **({"group": group} if group else {})}

    def log_metrics(self, metrics: dict[str, float], step: int) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, step)

    def finish(self, summary: dict[str, float], record_path: Path | None, artifacts_dir: Path | None, ok: bool) -> None:
        for key, value in summary.items():
            self.writer.add_scalar(f"final/{key}", value, 0)
        self.writer.add_hparams(self.params, {f"hparam/{k}": v for k, v in summary.items()}, run_name=".")
        if record_path is not None:
            self.writer.add_text("record", "```json\n" + Path(record_path).read_text() + "\n```")
        if artifacts_dir is not None:
            self.writer.add_text("artifacts", str(artifacts_dir))
        self.writer.close()

    def open_group(self, name: str, params: dict[str, str]) -> dict:
        (self.root / name).mkdir(parents=True, exist_ok=True)
        return {"group": name}

    def close_group(self, parent: dict, ok: bool) -> None:
        pass  # the folder is the group
