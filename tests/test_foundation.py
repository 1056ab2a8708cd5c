"""The spine: one tiny run end to end, its record, determinism, and bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from harness import record as rec
from harness.config import group_options, load_spec
from harness.errors import UserError
from tests.conftest import TINY, cli

REQUIRED_METRICS = {
    "peak_memory_gb", "memory_kind", "tokens_per_s", "samples_per_s", "mfu", "train_loss_first",
    "train_loss_last", "task_score", "task_score_base", "task_score_stderr", "trainable_params",
    "total_params", "wall_s", "train_fingerprint", "test_fingerprint",
}
REQUIRED_PROVENANCE = {"tunebench_version", "git_commit", "git_dirty", "packages", "started_at", "finished_at"}


def mean(xs):
    return sum(xs) / len(xs)


def test_lora_run_learns_and_writes_a_complete_record(run_tiny, results_dir):
    record = run_tiny("method=lora", "train.max_steps=30", "train.measure_skip_steps=2")
    assert record["status"] == "ok", record["error"]
    losses = record["metrics"]["train_losses"]
    assert len(losses) == 30
    assert mean(losses[-5:]) < mean(losses[:5]) - 0.3, losses  # learning, not noise

    on_disk = json.loads((results_dir / f"{record['run_id']}.json").read_text())
    assert on_disk["run_id"] == record["run_id"] and on_disk["status"] == "ok"
    missing = REQUIRED_METRICS - set(on_disk["metrics"])
    assert not missing, missing
    m = on_disk["metrics"]
    assert m["memory_kind"] == "cpu_rss_delta" and m["peak_memory_gb"] > 0
    assert m["tokens_per_s"] > 0 and 0 < m["mfu"] < 1
    assert 0 < m["trainable_params"] < m["total_params"]
    assert {"device", "device_name", "cpu_count", "memory_gb"} <= set(on_disk["hardware"])
    prov = on_disk["provenance"]
    assert REQUIRED_PROVENANCE <= set(prov)
    assert {"torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "lm_eval"} <= set(prov["packages"])
    # the record holds the resolved config: the method YAML's rank, the run's lr
    assert on_disk["config"]["method"]["r"] == load_spec(["method=lora"]).method.r
    assert on_disk["config"]["train"]["lr"] == 5e-3
    assert on_disk["config"]["model"]["arch"]["num_hidden_layers"] == 2


def test_same_seed_same_losses_different_seed_different(run_tiny, tmp_path):
    a = run_tiny("train.max_steps=5", f"results_dir={tmp_path / 'a'}")
    b = run_tiny("train.max_steps=5", f"results_dir={tmp_path / 'b'}")
    c = run_tiny("train.max_steps=5", "seed=1", f"results_dir={tmp_path / 'c'}")
    assert a["metrics"]["train_losses"] == b["metrics"]["train_losses"]
    assert a["metrics"]["train_losses"] != c["metrics"]["train_losses"]


def test_trainer_sees_the_batches_of_training_batches(run_tiny):
    """SFT's Trainer, the FSDP worker and the benchmark's bare loop train on the same batches
    (``harness.train.training_batches``): the first logged loss is the fresh model's loss on batch 0 of
    that order and not on some other batch."""
    import torch

    from harness import models
    from harness.tasks import get_task
    from harness.train import collate, tokenize_sft, training_batches

    record = run_tiny("method=full", "train.max_steps=2", "eval.enabled=false")
    spec = load_spec([*TINY, "method=full", "train.max_steps=2"])
    loaded = models.load(spec.model, seed=spec.seed, dtype=torch.float32, device="cpu")
    rows = tokenize_sft(loaded.tokenizer, get_task(spec.task).splits()["train"], spec.train.max_seq_len)
    _, order = training_batches(spec, len(rows), lengths=[len(r["input_ids"]) for r in rows])
    with torch.no_grad():
        first, other = (loaded.model(**collate([rows[i] for i in idx], loaded.tokenizer.pad_token_id)).loss.item()
                        for idx in (order[0], order[1]))
    assert abs(first - other) > 1e-3  # the check can tell batches apart
    assert abs(record["metrics"]["train_losses"][0] - first) < 1e-4, (record["metrics"]["train_losses"][0], first, other)


def test_epochs_instead_of_steps(run_tiny):
    """train.max_steps=-1 trains for train.epochs: ⌊epochs × examples / batch⌋ optimizer steps."""
    from harness.tasks import get_task

    record = run_tiny("train.max_steps=-1", "train.epochs=0.5", "train.batch_size=4", "eval.enabled=false")
    assert record["status"] == "ok", record["error"]
    spec = load_spec([*TINY, "train.max_steps=-1", "train.epochs=0.5", "train.batch_size=4"])
    n = len(get_task(spec.task).splits()["train"])
    assert record["metrics"]["steps"] == int(0.5 * n // 4) > 0


def test_record_write_is_atomic_under_a_crash(tmp_path, monkeypatch):
    from harness import atomic

    good = {"run_id": "r1", "status": "ok", "metrics": {"x": 1}}
    rec.write_record(tmp_path, good)

    def explode(fd):
        raise OSError("disk full")  # the record's bytes are in the temp file; flushing them fails

    monkeypatch.setattr(atomic.os, "fsync", explode)
    with pytest.raises(OSError):
        rec.write_record(tmp_path, {"run_id": "r1", "status": "ok", "metrics": {"x": 2}})
    # the old record is intact, no partial file or temp file is left behind
    assert json.loads((tmp_path / "r1.json").read_text())["metrics"] == {"x": 1}
    assert sorted(os.listdir(tmp_path)) == ["r1.json"]


def test_run_id_depends_on_config_not_on_results_dir():
    a = load_spec([*TINY, "results_dir=/tmp/a"])
    b = load_spec([*TINY, "results_dir=/tmp/b"])
    c = load_spec([*TINY, "method.r=8"])
    assert a.run_id == b.run_id != c.run_id
    # a setting added later leaves the ids of runs at its default as they were; set, it is part of the id
    assert load_spec([*TINY, "train.kernels=[]"]).run_id == a.run_id != load_spec([*TINY, "train.kernels=[liger]"]).run_id
    assert a.run_id.startswith("lora-tiny-tickets-")


def test_every_shipped_group_option_composes():
    for group in ("model", "method", "task"):
        for option in group_options(group):
            extra = {"hub": ["model.name_or_path=some/model"],
                     "custom": ["task.train_file=a.jsonl", "task.eval_file=b.jsonl"]}.get(option, [])
            spec = load_spec([f"{group}={option}", *extra])
            assert getattr(spec, group).name in (option, "hub")


@pytest.mark.parametrize(
    "override, expected",
    [
        ("method=lorra", "unknown method option 'lorra' (did you mean 'lora'?)"),
        ("model=gpt9", "unknown model option 'gpt9'"),
        ("method.r=0", "method.r must be a positive integer (got 0)"),
        ("train.lr=-1e-4", "train.lr must be a positive number (got -0.0001)"),
        ("train.batchsize=4", "unknown setting 'train.batchsize'"),
    ],
)
def test_bad_config_is_a_one_line_error(override, expected):
    with pytest.raises(UserError, match=None) as e:
        load_spec([*TINY, override])
    assert expected in str(e.value)
    assert "\n" not in str(e.value)


def test_cli_bad_input_exits_2_with_one_line_and_no_traceback(tmp_path):
    missing = tmp_path / "nope.jsonl"
    res = cli(*TINY, "task=custom", f"task.train_file={missing}", f"task.eval_file={missing}", f"results_dir={tmp_path}")
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == f"harness: error: data file not found: {missing}"
    assert "Traceback" not in res.stderr
    assert not list(tmp_path.glob("*.json"))  # bad input is not a measurement: no record

    res = cli(*TINY, "method=lorra")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "choose one of:" in res.stderr and "lora" in res.stderr


def test_custom_task_trains_and_names_a_bad_line(run_tiny, tmp_path):
    rows = [{"messages": [{"role": "user", "content": f"Say {w}."}, {"role": "assistant", "content": w}]}
            for w in ["apple", "pear", "plum", "fig"] * 8]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    record = run_tiny("task=custom", f"task.train_file={train}", f"task.eval_file={train}", "task.n_train=0", "train.max_steps=4")
    assert record["status"] == "ok" and record["metrics"]["task_eval_n"] == 8

    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0]) + "\n" + '{"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}\n')
    with pytest.raises(UserError, match=f"{bad}:2: each message needs a role"):
        run_tiny("task=custom", f"task.train_file={bad}", f"task.eval_file={train}", "task.n_train=0")


def test_failure_mid_run_is_recorded_as_error(run_tiny, results_dir, monkeypatch):
    from harness.methods import lora

    def boom(*a, **k):
        raise RuntimeError("injected fault in training")

    monkeypatch.setattr(lora, "sft", boom)
    record = run_tiny("method=lora")
    assert record["status"] == "error"
    assert record["error"]["message"] == "injected fault in training"
    assert "RuntimeError" in record["error"]["traceback"]
    assert json.loads((results_dir / f"{record['run_id']}.json").read_text())["status"] == "error"
