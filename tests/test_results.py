"""harness.results: records → DataFrame and the `harness results` table; bad files never fatal."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness.atomic import write_json
from harness.results import load, main

REPO = Path(__file__).resolve().parent.parent


def record(run_id: str, method: str, r: int | None, tps: float, status: str = "ok", sweep: str | None = "rank_ablation") -> dict:
    rec = {
        "schema_version": 1,
        "run_id": run_id,
        "status": status,
        "error": None,
        "config": {"method": {"name": method, "r": r}, "model": {"name": "smollm2-135m"}, "task": {"name": "tickets"}, "repeat": 0},
        "metrics": {"tokens_per_s": tps, "peak_memory_gb": 1.0 + (r or 0) / 100, "train_losses": [2.0, 1.5]},
        "hardware": {"device": "cpu"},
        "provenance": {"git_commit": "abc"},
        "artifacts": [],
    }
    if sweep:
        rec["sweep"] = {"name": sweep}
    return rec


@pytest.fixture
def runs(tmp_path) -> Path:
    d = tmp_path / "runs"
    for rec in (
        record("lora-a", "lora", 4, 300.0),
        record("lora-b", "lora", 16, 250.0),
        record("dora-a", "dora", 16, 200.0),
        record("full-a", "full", None, 100.0, status="oom", sweep=None),
    ):
        write_json(d / f"{rec['run_id']}.json", rec)
    (d / "corrupt.json").write_text('{"run_id": "half", "status": ')  # a non-atomic writer's leftovers
    (d / "foreign.json").write_text('{"hello": "world"}')
    (d / ".lora-c.json.x1y2.tmp").write_text('{"run_id": "lora-c"')  # an interrupted atomic write
    (d / "artifacts" / "lora-a").mkdir(parents=True)
    write_json(d / "artifacts" / "lora-a" / "adapter_config.json", {"r": 4})
    (d / "_cache").mkdir()
    write_json(d / "_cache" / "x.json", record("cached", "lora", 1, 1.0))
    return d


def test_load_returns_one_row_per_record_and_names_what_it_skipped(runs):
    warnings = []
    df = load(runs, warn=warnings.append)
    assert sorted(df["run_id"]) == ["dora-a", "full-a", "lora-a", "lora-b"]  # top-level records only
    assert len(warnings) == 2
    assert any("corrupt.json" in w for w in warnings) and any("foreign.json" in w for w in warnings)
    row = df.set_index("run_id").loc["lora-b"]
    assert (row["method"], row["r"], row["status"], row["sweep"], row["model"], row["task"]) == (
        "lora", 16, "ok", "rank_ablation", "smollm2-135m", "tickets")
    assert row["metrics.tokens_per_s"] == 250.0 and row["config.method.name"] == "lora"
    assert list(df.columns[:4]) == ["run_id", "status", "sweep", "method"]


def test_load_of_an_empty_dir_has_the_short_columns(tmp_path):
    df = load(tmp_path)
    assert df.empty and {"method", "r", "status", "sweep"} <= set(df.columns)


def test_cli_filters_sorts_and_exports(runs, tmp_path, capsys):
    csv, pq = tmp_path / "out.csv", tmp_path / "out.parquet"
    code = main([str(runs), "--where", "method!=full", "--where", "r>=16", "--sort", "tokens_per_s",
                 "--columns", "method,r,tokens_per_s", "--csv", str(csv), "--parquet", str(pq)])
    assert code == 0
    out, err = capsys.readouterr()
    assert "2 run(s)" in out and out.index("dora-a") < out.index("lora-b")  # ascending tokens/s
    assert "lora-a" not in out and "full-a" not in out
    assert "corrupt.json" in err and "wrote 2 rows" in err
    import pandas as pd

    for df in (pd.read_csv(csv), pd.read_parquet(pq)):
        assert sorted(df["run_id"]) == ["dora-a", "lora-b"]
        assert json.loads(df["metrics.train_losses"].iloc[0]) == [2.0, 1.5]
    assert main([str(runs), "--where", "status=oom", "--sort", "peak_memory_gb", "--desc"]) == 0
    out = capsys.readouterr().out
    assert "1 run(s)" in out and "full-a" in out


def test_cli_speaks_in_one_line_for_bad_input(runs, tmp_path, capsys):
    assert main([str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"harness results: error: results directory not found: {tmp_path / 'missing'}"
    assert main([str(runs), "--sort", "tokens_per"]) == 2
    assert "did you mean 'tokens_per_s'" in capsys.readouterr().err
    assert main([str(runs), "--where", "method>lora"]) == 2
    assert "not a number" in capsys.readouterr().err


def test_harness_results_command_dispatches(runs):
    res = subprocess.run([sys.executable, "-m", "harness", "results", str(runs), "--where", "sweep=rank_ablation"],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and "3 run(s)" in res.stdout and "Traceback" not in res.stderr
