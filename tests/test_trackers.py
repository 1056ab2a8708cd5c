"""Experiment trackers (``logger=``, harness/trackers/): what a run logs is read back through each
library's own API (MLflow's search_runs and metric history, TensorBoard's event reader, trackio's
SQLite storage, W&B's offline transaction log), and a tracker that cannot work is one line at start."""

from __future__ import annotations

import importlib.util
import json
import struct
import sys
from pathlib import Path

import pytest

from harness.cli import dispatch
from harness.trackers import Tracking, final_metrics, logger_spec
from tests.conftest import TINY

pytest.importorskip("mlflow", reason="the test extra installs the trackers (pip install -e '.[test]')")


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One tiny run logged live to MLflow's default store, through what `harness logger=mlflow` runs."""
    from harness.config import load_spec
    from harness.run_outputs import Outputs, execute_with

    root = tmp_path_factory.mktemp("mlflow")
    spec = load_spec([*TINY, f"results_dir={root}"])
    record = execute_with(spec, Outputs(logger_spec({"name": "mlflow"}), None))
    assert record["status"] == "ok", record["error"]
    return root, json.loads((root / f"{record['run_id']}.json").read_text())


def test_a_live_run_lands_in_mlflow_with_params_steps_final_figures_and_its_record(live):
    import mlflow

    root, record = live
    uri = f"sqlite:///{root / 'mlflow.db'}"
    assert record["tracker"]["name"] == "mlflow" and record["tracker"]["uri"] == uri
    from harness.record import validate

    assert validate(record) == []  # the tracker section is part of the schema
    mlflow.set_tracking_uri(uri)
    try:
        runs = mlflow.search_runs(experiment_names=["tunebench"], output_format="list")
    finally:
        mlflow.set_tracking_uri(None)
    assert [r.info.run_id for r in runs] == [record["tracker"]["run_id"]]
    run = runs[0]
    client = mlflow.MlflowClient(uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["method.name"] == "lora" and run.data.params["train.max_steps"] == "6"
    assert run.data.params["run_id"] == record["run_id"]
    losses = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in losses] == list(range(1, 7))  # one per optimizer step (train.log_every=1), at its step
    assert [m.value for m in losses] == pytest.approx(record["metrics"]["train_losses"])
    speed = client.get_metric_history(run.info.run_id, "train/tokens_per_s")
    assert len(speed) == 6 and all(m.value > 0 for m in speed)
    m = record["metrics"]
    assert run.data.metrics["task_score"] == pytest.approx(m["task_score"])
    assert run.data.metrics["peak_memory_gb"] == pytest.approx(m["peak_memory_gb"])
    assert run.data.metrics["mfu"] == pytest.approx(m["mfu"])
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == [f"{record['run_id']}.json"]
    # the database is under results_dir, its artifacts beside it: nothing lands in the working directory
    assert (root / "mlflow.db").is_file() and (root / "mlartifacts").is_dir() and not Path("mlruns").exists()


def test_harness_results_backfills_mlflow_once(live, tmp_path, measured, capsys):
    import mlflow

    src = tmp_path / "old"
    src.mkdir()
    (src / f"{measured['run_id']}.json").write_text(json.dumps(measured))
    assert dispatch(["results", "--to", "mlflow", str(src)]) == 0
    assert dispatch(["results", "--to", "mlflow", str(src)]) == 0  # a second backfill adds nothing
    assert "1 already there, skipped" in capsys.readouterr().err
    client = mlflow.MlflowClient(f"sqlite:///{src / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tunebench").experiment_id])
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    for probe, f in measured["metrics"]["forgetting"].items():  # forgetting per probe
        assert metrics[f"forgetting/{probe}/delta"] == pytest.approx(f["delta"])
    assert metrics["task_score_stderr"] == pytest.approx(measured["metrics"]["task_score_stderr"])
    assert dispatch(["results", str(src)]) == 0  # the record copied into mlartifacts/ is not read as a second run
    assert capsys.readouterr().out.count(measured["run_id"]) == 1


def wandb_records(path: Path):
    """W&B's offline ``.wandb`` file: a LevelDB-style log (32 KiB blocks of crc32 · length · type
    chunks) of ``wandb_internal_pb2.Record`` protobufs, parsed with wandb's own message types."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, pos, block, buf = path.read_bytes(), 7, 32768, b""
    assert data[:4] == b":W&B"
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:  # block padding
            pos += left - 7
            continue
        buf, pos = buf + data[pos : pos + length], pos + length
        if kind in (1, 4):  # FULL or LAST chunk
            rec = pb.Record()
            rec.ParseFromString(buf)
            buf = b""
            yield rec


def read_back(name: str, root: Path, run_id: str) -> dict:
    """{"params", "loss" [(step, value)], "final" {key: value}, "artifacts" [names]} through the library's reader."""
    if name == "tensorboard":
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

        acc = EventAccumulator(str(root / "tensorboard" / run_id), size_guidance={"scalars": 0, "tensors": 0})
        acc.Reload()
        texts = {t.rsplit("/", 1)[0]: acc.Tensors(t)[0].tensor_proto.string_val[0].decode() for t in acc.Tags()["tensors"]}
        return {"params": json.loads(texts["config"].strip("`\n")), "loss": [(e.step, e.value) for e in acc.Scalars("train/loss")],
                "final": {t.removeprefix("final/"): acc.Scalars(t)[0].value for t in acc.Tags()["scalars"] if t.startswith("final/")},
                "artifacts": [t for t in texts if t in ("record", "artifacts")], "record": texts.get("record", "")}
    if name == "trackio":
        import trackio

        logs = trackio.SQLiteStorage.get_logs("tunebench", run_id)
        final = {k.removeprefix("final/"): v for row in logs for k, v in row.items() if k.startswith("final/")}
        assert trackio.utils.TRACKIO_DIR == root.resolve() / "trackio"  # under results_dir, not ~/.cache
        arts = trackio.SQLiteStorage.get_run_artifacts("tunebench", run_id, None)
        return {"params": trackio.SQLiteStorage.get_run_config("tunebench", run_id),
                "loss": [(row["step"], row["train/loss"]) for row in logs if "train/loss" in row],
                "final": final, "artifacts": [a for links in arts.values() for a in links]}
    if name == "wandb":
        (path,) = (root / "wandb" / "wandb").glob("offline-run-*/run-*.wandb")
        out = {"params": {}, "loss": [], "final": {}, "artifacts": []}
        for rec in wandb_records(path):
            kind = rec.WhichOneof("record_type")
            if kind in ("run", "config"):
                updates = rec.run.config.update if kind == "run" else rec.config.update
                out["params"].update({c.key or ".".join(c.nested_key): json.loads(c.value_json) for c in updates})
            elif kind == "history":
                row = {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item}
                if "train/loss" in row:
                    out["loss"].append((row["_step"], row["train/loss"]))
            elif kind == "summary":
                out["final"].update({i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in rec.summary.update})
            elif kind == "artifact":
                out["artifacts"] += [m.path for m in rec.artifact.manifest.contents]
        return out
    raise AssertionError(name)


@pytest.mark.parametrize("name", ["tensorboard", "trackio", "wandb"])
def test_each_tracker_keeps_params_steps_final_figures_and_the_record(name, measured, tmp_path, monkeypatch):
    """Through backfill, the same adapter calls a live run makes (start, steps, finish)."""
    if importlib.util.find_spec(name) is None:  # not imported here: trackio reads TRACKIO_DIR when first imported
        pytest.skip(f"{name} is not installed (pip install -e '.[test]')")
    monkeypatch.delenv("TRACKIO_DIR", raising=False)
    # trl's trainers import trackio, so an earlier in-process test (DPO, GRPO) loaded it with its
    # default TRACKIO_DIR; a run is a fresh process whose tracker imports it first, so do that here.
    for mod in [m for m in sys.modules if m == "trackio" or m.startswith("trackio.")]:
        monkeypatch.delitem(sys.modules, mod)
    src = tmp_path / "runs"
    src.mkdir()
    (src / f"{measured['run_id']}.json").write_text(json.dumps(measured))
    from harness.results import records
    from harness.trackers.backfill import backfill

    assert backfill(logger_spec({"name": name}), src, records(src)) == (1, 0)
    got = read_back(name, src, measured["run_id"])
    assert got["params"]["method.name"] == "lora" and got["params"]["run_id"] == measured["run_id"]
    losses = measured["metrics"]["train_losses"]
    assert [s for s, _ in got["loss"]] == list(range(1, len(losses) + 1))
    assert [v for _, v in got["loss"]] == pytest.approx(losses, rel=1e-5)
    want = final_metrics(measured)
    assert {"task_score", "task_score_stderr", "peak_memory_gb", "mfu", "forgetting/general_mc/delta",
            "forgetting/general_ppl/delta"} <= set(want)
    for key, value in want.items():
        assert got["final"][key] == pytest.approx(value, rel=1e-5), key
    assert got["artifacts"], "the record was not kept"
    if name == "tensorboard":
        assert json.loads(got["record"].removeprefix("```json\n").removesuffix("\n```"))["run_id"] == measured["run_id"]
    if name == "wandb":
        assert "record.json" in got["artifacts"]


def test_a_missing_tracker_package_is_one_line_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # `import wandb` now raises ImportError
    code = dispatch([*TINY, "logger=wandb", f"results_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert "pip install 'tunebench[wandb]'" in err
    assert list(tmp_path.glob("*.json")) == []  # nothing ran


def test_an_unreachable_mlflow_server_is_one_line_before_any_work(tmp_path, capsys):
    code = dispatch([*TINY, "logger=mlflow", "logger.uri=http://127.0.0.1:9", f"results_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "http://127.0.0.1:9" in err and "did not answer" in err, err
    assert list(tmp_path.glob("*.json")) == []


def test_bad_logger_settings_are_one_line(tmp_path, capsys):
    assert dispatch([*TINY, "logger=mlfow", f"results_dir={tmp_path}"]) == 2
    assert "did you mean 'mlflow'" in capsys.readouterr().err
    assert dispatch([*TINY, "logger=wandb", "logger.mode=onlin", f"results_dir={tmp_path}"]) == 2
    assert "logger.mode" in capsys.readouterr().err
    assert dispatch(["results", "--to", "wandbb", str(tmp_path)]) == 2


class Failing:
    name = "fake"

    def __init__(self):
        self.calls = 0

    def log_metrics(self, metrics, step):
        self.calls += 1
        raise ConnectionError("server went away")

    def finish(self, *args):
        self.calls += 1
        raise ConnectionError("server went away")


def test_a_tracker_that_fails_after_training_is_a_warning_never_a_crash(capsys):
    tracker = Failing()
    run = Tracking(tracker, {"name": "fake", "run_id": "x"})
    run.add_task("train", total=3)
    run.update(completed=1, loss=1.0)  # fails: one warning, then the tracker is left alone
    run.update(completed=2, loss=0.9)
    run.finish({"status": "ok", "metrics": {"task_score": 0.5}}, None, None)
    assert tracker.calls == 1
    assert "server went away" in run.warning and capsys.readouterr().err.count("warning") == 1


def test_the_tracker_files_default_under_results_dir(tmp_path):
    spec = logger_spec({"name": "wandb"})
    assert spec.folder(tmp_path) == tmp_path.resolve() / "wandb"
    assert logger_spec({"name": "wandb", "dir": str(tmp_path / "x")}).folder(tmp_path) == (tmp_path / "x").resolve()
