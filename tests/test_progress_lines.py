"""Progress where there is no terminal (CI logs, ``| tee``, ``nohup``): a run and a sweep piped into a
file print one parsable line per N steps, with step/total, loss, tokens/s, elapsed, ETA and phase,
and no line of theirs is wrapped at 80 columns."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

from harness.plain_progress import PlainProgress
from tests.conftest import REPO, TINY

# "train 4/6 steps · loss 6.7272 · 3402.1 tok/s · 0:00 elapsed · ETA 0:00", optionally "[point] " first
LINE = re.compile(r"^(?:\[(?P<point>[^\]]+)\] )?(?P<phase>base eval|train|tuned eval|base probes|tuned probes|eval|probes) "
                  r"(?P<done>\d+)/(?P<total>\d+) (?P<unit>steps|examples)"
                  r"(?: · loss (?P<loss>[\d.]+|–) · (?P<tps>[\d.]+|–) tok/s)? · (?P<elapsed>\d+:\d\d(?::\d\d)?) elapsed"
                  r" · ETA (?P<eta>\d+:\d\d(?::\d\d)?|–)$")


def piped(args: list[str], log, timeout: float = 600, env: dict | None = None) -> int:
    """``python -m harness …`` with stdout and stderr into one file, as ``… > run.log 2>&1`` does."""
    with open(log, "w") as f:
        return subprocess.run([sys.executable, "-m", "harness", *args], cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                              timeout=timeout, env={**os.environ, "COLUMNS": "", **(env or {})}).returncode


def progress(text: str) -> list[dict]:
    return [m.groupdict() for line in text.splitlines() if (m := LINE.match(line))]


def test_a_piped_run_prints_a_parsable_line_every_n_steps_and_wraps_nothing(tmp_path):
    results = tmp_path / ("a-results-folder-with-a-long-name-" * 3)  # the banner runs past 80 columns
    log = tmp_path / "run.log"
    assert piped([*TINY, "log.every=2", "train.save=adapter", f"results_dir={results}"], log) == 0
    text = log.read_text()
    lines = progress(text)
    assert [ln["phase"] for ln in lines] == ["base eval"] * 2 + ["train"] * 4 + ["tuned eval"] * 2
    train = [ln for ln in lines if ln["phase"] == "train"]
    assert [int(ln["done"]) for ln in train] == [0, 2, 4, 6] and {ln["total"] for ln in train} == {"6"}
    assert {ln["unit"] for ln in train} == {"steps"}
    record = json.loads(next(results.glob("*.json")).read_text())
    # each line carries the loss logged at its step (train.log_every=1: one loss per step)
    assert [float(ln["loss"]) for ln in train[1:]] == [round(record["metrics"]["train_losses"][i], 4) for i in (1, 3, 5)]
    assert all(float(ln["tps"]) > 0 for ln in train[1:]) and train[-1]["eta"] == "0:00"
    # one line each, whole: the banner, and the summary rows with their values
    banner = next(line for line in text.splitlines() if line.startswith("tunebench lora"))
    assert banner.endswith(f"{record['run_id']}.json") and len(banner) > 80
    assert re.search(r"│ task score base → tuned\s+│\s+[\d.]+ → [\d.]+ \(± [\d.]+\) │", text)
    # harness eval of the same run: a line as each phase starts and ends
    data = REPO / "harness" / "data" / "tickets_handwritten.jsonl"
    assert piped(["eval", record["run_id"], "--data", str(data), "--results", str(results), "--limit", "4"], log) == 0
    assert [(ln["phase"], ln["done"], ln["total"]) for ln in progress(log.read_text())] == [("eval", "0", "4"), ("eval", "4", "4")]


def test_the_default_is_about_twenty_lines_a_phase_and_one_a_minute():
    out: list[str] = []
    p = PlainProgress(write=out.append, heartbeat_s=3600)
    p.add_task("train", total=200, loss=float("nan"))
    for step in range(1, 201):
        p.update(completed=step, loss=1.0 / step, tokens_per_s=100.0)
    assert len(out) == 21 and out[1].startswith("train 10/200 steps · loss 0.1000 · 100.0 tok/s")  # 0, 10, …, 200
    # a step (or an eval) that takes longer than the heartbeat still shows up
    out.clear()
    slow = PlainProgress(write=out.append, heartbeat_s=0.0)
    slow.add_task("base eval", total=100)
    slow.tick()
    slow.tick()
    assert out == ["base eval 0/100 examples · 0:00 elapsed · ETA –"] * 3


def test_a_piped_sweep_prints_each_points_progress_prefixed_and_logs_to_one_mlflow_parent(tmp_path):
    mlflow = __import__("pytest").importorskip("mlflow")
    results = tmp_path / "runs"
    log = tmp_path / "sweep.log"
    code = piped(["sweep=smoke", "sweep.points=[{method:lora,method.r:2},{method:full}]", "logger=mlflow",
                  f"results_dir={results}"], log)
    text = log.read_text()
    assert code == 0, text[-3000:]
    lines = progress(text)
    by_point: dict[str, list[dict]] = {}
    for ln in lines:
        by_point.setdefault(ln["point"], []).append(ln)
    assert set(by_point) == {"method=lora method.r=2", "method=full"}
    for point, got in by_point.items():
        train = [int(ln["done"]) for ln in got if ln["phase"] == "train"]
        assert train and train[-1] == 3 and {ln["total"] for ln in got if ln["phase"] == "train"} == {"3"}, (point, got)
        assert {ln["phase"] for ln in got} >= {"train", "tuned eval"}
    # the point's end is one line with its figures (rich no longer wraps them at 80 columns)
    assert re.search(r"^\s+ok method=lora method\.r=2 +\(\d+ s\) +peak [\d.]+ GB · [\d.]+ tok/s · score [\d.]+$", text, re.M)
    # one parent run for the sweep, a child per point; each record keeps its run id and the parent's
    records = {r["run_id"]: r for r in (json.loads(p.read_text()) for p in results.glob("*.json"))}
    client = mlflow.MlflowClient(f"sqlite:///{results / 'mlflow.db'}")
    runs = client.search_runs([client.get_experiment_by_name("tunebench").experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert len(runs) == 3 and len(parents) == 1 and parents[0].data.tags["tunebench.sweep"] == "smoke"
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id}
    assert {rec["tracker"]["run_id"] for rec in records.values()} == set(children)
    assert {rec["tracker"]["parent_run_id"] for rec in records.values()} == {parents[0].info.run_id}
    assert all(r.info.status == "FINISHED" for r in runs)


def test_log_every_must_be_a_positive_integer(tmp_path, capsys):
    from harness.cli import dispatch

    assert dispatch([*TINY, "log.every=0", f"results_dir={tmp_path}"]) == 2
    assert "log.every must be a positive integer" in capsys.readouterr().err
