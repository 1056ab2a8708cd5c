"""Learning that shows: batches without padding waste, data subsampling, the lr_rank and
data_scaling presets (run under debug=smoke), SFT → DPO chaining, and the advisor reading the
sweeps' records."""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.conftest import REPO, TINY, cli
from harness.config import compose, load_spec
from harness.errors import UserError
from harness.record import read_record
from harness.sweep import plan, run_sweep
from harness.train import batch_order, padding_fraction

# ---------------------------------------------------------------- batching


def test_length_grouping_cuts_padding_and_keeps_every_row_once_per_epoch():
    import random

    rng = random.Random(1)
    lengths = [rng.randint(40, 120) for _ in range(96)]
    shuffled = batch_order(96, 8, 12, seed=0)
    grouped = batch_order(96, 8, 12, seed=0, lengths=lengths)
    # one epoch = 12 batches of 8: each row exactly once either way
    assert sorted(i for b in grouped for i in b) == list(range(96)) == sorted(i for b in shuffled for i in b)
    assert padding_fraction(grouped, lengths) < 0.5 * padding_fraction(shuffled, lengths)
    assert grouped == batch_order(96, 8, 12, seed=0, lengths=lengths)  # deterministic
    assert grouped != batch_order(96, 8, 12, seed=1, lengths=lengths)


def test_every_run_records_padding_fraction_and_batching(run_tiny):
    grouped = run_tiny("eval.enabled=false")
    plain = run_tiny("eval.enabled=false", "train.batching=shuffled")
    for rec, how in ((grouped, "by_length"), (plain, "shuffled")):
        assert rec["status"] == "ok", rec["error"]
        assert rec["metrics"]["batching"] == how == rec["config"]["train"]["batching"]
    assert 0 <= grouped["metrics"]["padding_fraction"] < plain["metrics"]["padding_fraction"]


# ---------------------------------------------------------------- task.n_train


def _chat_file(path: Path, n: int) -> Path:
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": f"a{i}"}]}) + "\n")
    return path


def test_custom_n_train_is_a_seeded_nested_subsample(tmp_path):
    from harness.tasks import get_task

    data = _chat_file(tmp_path / "d.jsonl", 50)

    def train(n, seed=0):
        spec = load_spec(["task=custom", f"task.train_file={data}", f"task.eval_file={data}", f"task.n_train={n}", f"task.seed={seed}"])
        return [ex.answer for ex in get_task(spec.task).splits()["train"]]

    assert len(train(0)) == 50 and train(0)[:3] == ["a0", "a1", "a2"]  # 0 = the whole file, in order
    small, big = train(8), train(16)
    assert len(small) == 8 and len(set(small)) == 8 and big[:8] == small  # nested
    assert small == train(8) and small != train(8, seed=1) and small != train(0)[:8]
    with pytest.raises(UserError, match="has only 50 examples"):
        train(51)


def test_generated_n_train_is_deterministic_and_balanced():
    from harness.tasks import get_task

    def labels(n):
        return [ex.answer for ex in get_task(load_spec([f"task.n_train={n}"]).task).splits()["train"]]

    a = labels(16)
    assert a == labels(16) and len(a) == 16 and {a.count(x) for x in set(a)} == {4}


# ---------------------------------------------------------------- presets under debug=smoke

# The presets' own learning rates stand (a point's train.lr is what it measures).
SMOKE = ["debug=smoke", "eval.limit=4", "task.n_validation=4", "task.n_test=8"]


def _run_preset(name: str, d: Path, keep: int, extra: list[str], grid: dict | None = None) -> tuple[list, dict]:
    """Plan every point of a preset (each is composed and validated), run its first ``keep``."""
    overrides = [f"sweep={name}", *SMOKE, *extra]
    cfg = compose([*overrides, f"results_dir={d}"])
    if grid:
        cfg.sweep.grid = OmegaConf.create(grid)
    _, points, _ = plan(cfg, overrides)
    cfg.sweep.points = OmegaConf.create(OmegaConf.to_container(cfg.sweep.points)[:keep])
    assert run_sweep(cfg, overrides) == 0
    return points, {p.stem: read_record(p) for p in d.glob("*.json")}


def test_lr_rank_preset_runs_under_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    points, recs = _run_preset("lr_rank", tmp_path / "r", 1, ["train.max_steps=2"])
    lora = {(p.spec.method.r, p.spec.lr) for p in points if p.spec.method.name == "lora"}
    full = {p.spec.lr for p in points if p.spec.method.name == "full"}
    assert len({r for r, _ in lora}) >= 3 and len({lr for _, lr in lora}) >= 3 and len(full) >= 3
    assert max(lr for _, lr in lora) >= 10 * max(full)  # the grids test "LoRA's best lr ≈ 10× full's"
    (rec,) = recs.values()
    assert rec["status"] == "ok" and rec["sweep"]["name"] == "lr_rank" and "padding_fraction" in rec["metrics"]


def test_data_scaling_preset_runs_under_smoke(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    # two sizes of the grid at 1 epoch of batch 4: 4 and 8 steps
    # (and 8 documents per forgetting probe: the preset scores every one, ~all of the test's time)
    points, recs = _run_preset("data_scaling", tmp_path / "d", 1, ["train.epochs=1", "eval.probe_limit=8"],
                               grid={"task.n_train": [16, 32]})
    sizes = {p.spec.task.n_train for p in points}
    assert sizes == {16, 32} and {p.spec.method.name for p in points} >= {"lora", "full"}
    assert {p.spec.train.max_steps for p in points} == {-1}  # fixed epochs, not fixed steps
    got = {r["config"]["task"]["n_train"]: r["metrics"]["steps"] for r in recs.values()}
    assert got == {16: 4, 32: 8}
    assert all(r["sweep"]["name"] == "data_scaling" and r["status"] == "ok" for r in recs.values())
    # every point records forgetting on both shipped probes, oriented (drop > 0 = forgot)
    forgetting = [r["metrics"]["forgetting"] for r in recs.values()]
    assert all(set(f) == {"general_mc", "general_ppl"} and all("drop" in p and "stderr" in p for p in f.values())
               for f in forgetting)


def test_full_data_scaling_preset_has_five_sizes_per_method(tmp_path):
    _, points, _ = plan(compose(["sweep=data_scaling", f"results_dir={tmp_path}"]), ["sweep=data_scaling"])
    by_method: dict[str, set] = {}
    for p in points:
        by_method.setdefault(p.spec.method.name, set()).add(p.spec.task.n_train)
    assert set(by_method) >= {"lora", "full"} and all(len(s) >= 5 for s in by_method.values())
    assert {p.spec.train.epochs for p in points} == {2.0}
    assert all(tuple(p.spec.eval.probes) == ("general_mc", "general_ppl") for p in points)  # forgetting too


# ---------------------------------------------------------------- SFT → DPO


def test_dpo_starts_from_an_sft_adapter(run_tiny, results_dir):
    sft = run_tiny("method=lora", "train.save=adapter", "eval.enabled=false")
    assert sft["status"] == "ok", sft["error"]
    dpo = run_tiny("method=dpo", "task=tickets_prefs", f"method.init_from={sft['run_id']}", "train.max_steps=2", "eval.enabled=false")
    assert dpo["status"] == "ok", dpo["error"]
    assert dpo["metrics"]["init_from"] == sft["run_id"]
    assert dpo["config"]["method"]["init_from"] == sft["run_id"]
    # the printed summary names the start, so the base → tuned row is not read as DPO's gain
    from rich.console import Console

    from harness.console import print_run

    console = Console(record=True, width=200)
    print_run(dpo, console)
    assert f"start: {sft['run_id']} → tuned" in console.export_text()


def test_init_from_a_missing_run_is_one_line_exit_2(tmp_path):
    res = cli(*TINY, "method=dpo", "task=tickets_prefs", "method.init_from=no-such-run", f"results_dir={tmp_path}", timeout=120)
    assert res.returncode == 2, res.stderr
    assert "no-such-run" in res.stderr and "Traceback" not in res.stderr


def test_floor_note_names_a_start_that_scores_zero():
    from harness.init_from import floor_note

    assert "method.init_from" in floor_note("dpo", 0.0, None)
    assert floor_note("dpo", 0.0, "lora-run") is None  # chained: the start is the SFT model
    assert floor_note("grpo", 0.4, None) is None


# ---------------------------------------------------------------- advisor reads the sweeps

TEMPLATE = REPO / "results" / "main"


def _record(sweep: str, method: str, *, r=None, lr: float, n: int = 600, score: float, se: float = 0.03) -> dict:
    rec = copy.deepcopy(read_record(next(TEMPLATE.glob("*.json"))))
    rec["sweep"] = {"name": sweep}
    rec["config"]["method"].update(name=method, r=r)
    rec["config"]["train"]["lr"] = lr
    rec["config"]["task"]["n_train"] = n
    rec["metrics"].update(task_score=score, task_score_stderr=se)
    rec["run_id"] = f"{sweep}-{method}-{r}-{lr:g}-{n}"
    return rec


def _write(d: Path, recs: list[dict]) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for rec in recs:
        (d / f"{rec['run_id']}.json").write_text(json.dumps(rec))
    return d


def _advise(run_cli, results: Path, *extra: str) -> dict:
    code, out, err = run_cli("recommend", "--gpu", "24GB", "--examples", "500", "--model", "smollm2-135m",
                             "--results", str(results), "--json", *extra)
    assert code == 0, err
    return json.loads(out)


def test_advisor_takes_rank_and_lr_from_lr_rank_records(tmp_path, run_cli):
    plain = _advise(run_cli, _write(tmp_path / "none", []))
    lr_rank = [_record("lr_rank", "lora", r=r, lr=lr, score=s) for r, lr, s in
               ((16, 2e-4, 0.55), (16, 2e-3, 0.80), (32, 2e-3, 0.93), (4, 2e-3, 0.70))]
    measured = _advise(run_cli, _write(tmp_path / "lr", lr_rank))
    assert (plain["rank"], plain["learning_rate"]) != (32, 2e-3)
    assert (measured["rank"], measured["learning_rate"]) == (32, 2e-3)
    text = " ".join(s["text"] for s in measured["steps"])
    assert "measured on your data" in text and "0.93" in text
    assert {e.get("sweep") for e in measured["evidence"]} == {"lr_rank"}
    # within 2 SE of the rules' own choice: the rules stand
    close = [_record("lr_rank", "lora", r=16, lr=2e-4, score=0.80), _record("lr_rank", "lora", r=32, lr=2e-3, score=0.83)]
    kept = _advise(run_cli, _write(tmp_path / "close", close))
    assert (kept["rank"], kept["learning_rate"]) == (plain["rank"], plain["learning_rate"])


def test_advisor_switches_method_on_data_scaling_records(tmp_path, run_cli):
    plain = _advise(run_cli, _write(tmp_path / "none", []))
    assert plain["method"] == "lora"
    curve = [_record("data_scaling", m, r=16 if m == "lora" else None, lr=lr, n=n, score=s) for m, lr, n, s in
             (("lora", 2e-4, 64, 0.30), ("full", 2e-5, 64, 0.50), ("lora", 2e-4, 512, 0.55), ("full", 2e-5, 512, 0.85))]
    measured = _advise(run_cli, _write(tmp_path / "ds", curve))
    assert measured["method"] == "full" and measured["rank"] is None
    text = " ".join(s["text"] for s in measured["steps"])
    assert "measured on your data: at 512 examples" in text and "0.65 of full fine-tuning's score" in text
