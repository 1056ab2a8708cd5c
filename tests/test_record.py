"""The run record's contract: every writer's record validates against the shipped schema, and
version-1 records (all those committed under results/) still load and report.

Writers covered: a finished run, a sweep point its parent had to kill, the watchdog's hard stop
of an over-budget run, and an FSDP job (its parent writes the record from the workers' report).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import schema
from harness.config import load_spec
from harness.record import SCHEMA_FILE, SCHEMA_VERSION, model_arch, read_record, validate
from harness.watchdog import EXIT_OOM
from tests.conftest import REPO, TINY

V1_RECORD = REPO / "results" / "method_matrix" / "lora-smollm2-135m-tickets-6ebdd8995a.json"  # written as schema 1


def _as_written(path: Path) -> dict:
    rec = json.loads(path.read_text())  # the file itself, not read_record's in-memory upgrade
    assert rec["schema_version"] == SCHEMA_VERSION
    return rec


def test_the_schema_uses_only_what_the_validator_checks():
    def keywords(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield key
                if key in ("properties", "$defs"):
                    for sub in value.values():
                        yield from keywords(sub)
                else:
                    yield from keywords(value)
        elif isinstance(node, list):
            for v in node:
                yield from keywords(v)

    unknown = {k for k in keywords(schema.load(SCHEMA_FILE)) if k not in schema.KEYWORDS}
    assert not unknown, f"the shipped schema uses keywords harness/schema.py ignores: {unknown}"


def test_the_schema_declares_every_config_field():
    """config is exactly the RunSpec: a new spec field must be added to the schema too."""
    spec = load_spec(TINY).to_dict()
    config = schema.load(SCHEMA_FILE)["$defs"]["config"]
    assert set(spec) == set(config["properties"])
    for section in ("model", "method"):
        assert set(spec[section]) == set(config["properties"][section]["properties"]), section


def test_the_validator_catches_what_a_careless_writer_does(run_tiny):
    good = run_tiny("train.max_steps=2", "eval.enabled=false")
    assert validate(good) == []
    bad = json.loads(json.dumps(good))
    bad["config"]["model"]["arch"] = 3  # a measured value written over the spec
    bad["status"] = "killed"
    del bad["provenance"]["git_commit"]
    bad["surprise"] = 1
    problems = "\n".join(validate(bad))
    for expected in ("$.config.model.arch: 3 is not of type object", "$.status: 'killed' is not one of",
                     "missing required 'git_commit'", "unexpected field 'surprise'"):
        assert expected in problems, problems


def test_a_run_writes_a_valid_record_whose_config_is_the_spec_that_ran(run_tiny, results_dir):
    spec = load_spec([*TINY, f"results_dir={results_dir}", "train.max_steps=2", "eval.enabled=false"])
    record = run_tiny("train.max_steps=2", "eval.enabled=false")
    written = _as_written(results_dir / f"{record['run_id']}.json")
    assert validate(written) == [] and "warnings" not in written
    assert written["config"] == json.loads(json.dumps(spec.to_dict()))  # not a field changed by the run
    # the measured architecture has its own field; the tiny spec's max_position_embeddings is an input, not measured
    assert written["model_arch"]["hidden_size"] == spec.model.arch["hidden_size"]
    assert "max_position_embeddings" in written["config"]["model"]["arch"]
    assert "max_position_embeddings" not in written["model_arch"]


def test_a_sweep_point_killed_by_its_parent_gets_a_valid_record(tmp_path):
    from harness.config import compose
    from harness.sweep import plan
    from harness.sweep.point import run_point

    point = plan(compose(["sweep=smoke", f"results_dir={tmp_path}"]), ["sweep=smoke"])[1][0]
    outcome = run_point(point, "smoke", timeout_s=0.5)  # the child is still importing torch: it is stopped
    written = _as_written(tmp_path / f"{point.run_id}.json")
    assert written["status"] == "timeout" and written["recorded_by"] == "sweep"
    assert written == json.loads(json.dumps(outcome.record))
    assert validate(written) == []


def test_the_watchdog_hard_stop_writes_a_valid_oom_record(tmp_path):
    code = textwrap.dedent(f"""
        import time
        from harness import watchdog
        from harness.config import load_spec
        from harness.record import build_record
        watchdog.HARD_GRACE_S = 0.3
        class Mem:
            device = "cpu"
            def current_gb(self): return 2.0
            def peak(self): return {{"peak_memory_gb": 2.0, "memory_kind": "cpu_rss_delta"}}
        spec = load_spec({[*TINY, f"results_dir={tmp_path}", "budget_gb=1"]!r})
        record = build_record(spec, "cpu")
        print(record["run_id"], flush=True)
        watchdog.Watchdog(Mem(), 1.0, record=record, results_dir={str(tmp_path)!r}).start()
        for _ in range(500):
            try:
                time.sleep(0.01)
            except MemoryError:
                pass  # a run stuck in native code never unwinds; this one just ignores it
    """)
    res = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == EXIT_OOM, res.stderr[-2000:]
    written = _as_written(tmp_path / f"{res.stdout.split()[0]}.json")
    assert written["status"] == "oom" and written["recorded_by"] == "watchdog"
    assert "did not unwind" in written["error"]["message"]
    assert written["metrics"]["peak_memory_gb"] == 2.0
    assert validate(written) == []


def test_an_fsdp_job_writes_a_valid_record(run_tiny, results_dir):
    record = run_tiny("method=fsdp", "method.world_size=2", "train.max_steps=2", "eval.enabled=false")
    assert record["status"] == "ok", record["error"]
    written = _as_written(results_dir / f"{record['run_id']}.json")
    assert written["metrics"]["world_size"] == 2
    assert validate(written) == []


def test_a_version_1_record_still_loads_and_reports(tmp_path):
    raw = json.loads(V1_RECORD.read_text())
    assert raw["schema_version"] == 1 and "model_arch" not in raw
    rec = read_record(V1_RECORD)
    assert model_arch(rec) == raw["config"]["model"]["arch"] and model_arch(rec)["hidden_size"] == 576

    from harness import report

    alone = tmp_path / "v1"  # the record by itself, as a folder someone sends you
    alone.mkdir()
    shutil.copy(V1_RECORD, alone)
    frame = report.load_frame(alone)
    assert "model_arch.hidden_size" in frame.columns
    estimates, why = report.advisor_estimates(frame, frame)
    assert why is None and estimates.notna().all()  # the advisor sized every run from the v1 arch
    from advisor.validate.memory import estimate_record

    # the report's figure is the one `advisor validate` scores (pandas' numpy scalars read as JSON types)
    assert estimates.iloc[0] == pytest.approx(estimate_record(raw)[0], rel=1e-9)
    out = tmp_path / "report"
    res = subprocess.run([sys.executable, "-m", "harness", "report", str(alone), "--out", str(out)],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    md = (out / "report.md").read_text()
    assert "1 run (1 ok)" in md and "| lora | 1 ok |" in md
    assert "Median \\|error\\|" in md  # (Markdown-escaped) the advisor-vs-measured plot found the v1 record's architecture


def test_every_committed_record_loads_with_its_architecture():
    from harness.results import records

    dirs = sorted({p.parent for p in (REPO / "results").rglob("*.json") if p.parent.name not in ("evals",)})
    loaded = [r for d in dirs for r in records(d, warn=lambda msg: None)]
    assert len(loaded) >= 30  # results/main, baselines, forgetting, method_matrix, rank_ablation
    assert {r["schema_version"] for r in loaded} <= {1, SCHEMA_VERSION}  # committed before and after schema 2
    assert all(model_arch(r).get("num_hidden_layers") for r in loaded if r["status"] == "ok")


@pytest.mark.parametrize("version", [3])
def test_a_record_from_a_newer_tunebench_is_named_not_misread(tmp_path, version):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"run_id": "r", "status": "ok", "schema_version": version}))
    with pytest.raises(ValueError, match=f"schema_version {version} is newer"):
        read_record(path)
