"""Keeping what was trained: adapter size, re-evaluation, merged export, and bad input.

Tiny random-init Llama (hidden 64, intermediate 128, 4 heads / 2 KV heads, 2 layers). A task it
can actually learn in seconds: every training answer is "yes", a third of the test answers are
"no", so the tuned model scores 8/12 — a non-trivial score for `harness eval` to reproduce.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import artifacts, eval_command
from harness.cli import dispatch
from tests.conftest import REPO, TINY, cli

LORA = ["method=lora", "method.r=4", "train.lr=0.02", "train.max_steps=12", "train.save=adapter"]


def _write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n" for q, a in rows))
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    d = tmp_path_factory.mktemp("data")
    return {
        "train": _write_jsonl(d / "train.jsonl", [(f"Is {i} fine?", "yes") for i in range(32)]),
        "test": _write_jsonl(d / "test.jsonl", [(f"Is {i} fine?", "no" if i % 3 == 0 else "yes") for i in range(100, 112)]),
    }


def _run(results: Path, *overrides: str) -> dict:
    from harness.config import load_spec
    from harness.run import execute

    record = execute(load_spec([*TINY, f"results_dir={results}", *overrides]))
    assert record["status"] == "ok", record["error"]
    return record


def _custom(data) -> list[str]:
    return ["task=custom", f"task.train_file={data['train']}", f"task.eval_file={data['test']}", "task.n_train=0",  # all rows
            "eval.limit=null"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("runs")


@pytest.fixture(scope="module")
def lora_run(results, data) -> dict:
    return _run(results, *LORA, *_custom(data))


@pytest.fixture(scope="module")
def dora_run(results) -> dict:
    return _run(results, "method=dora", "method.r=4", "train.lr=0.02", "train.max_steps=6", "eval.enabled=false", "train.save=adapter")


def _logits(model, tok) -> "torch.Tensor":
    import torch

    enc = tok(["Is 5 fine? yes", "The quick brown fox"], return_tensors="pt", padding=True)
    with torch.inference_mode():
        return model(**enc).logits.float()


# ---------------------------------------------------------------- the adapter on disk


def test_lora_adapter_has_the_expected_size(lora_run, results):
    from safetensors import safe_open

    arch = lora_run["config"]["model"]["arch"]
    d, ff = arch["hidden_size"], arch["intermediate_size"]
    kv = d // arch["num_attention_heads"] * arch["num_key_value_heads"]  # 64/4·2 = 32
    # all-linear: q, k, v, o, gate, up, down; LoRA adds A (r×d_in) + B (d_out×r) to each.
    shapes = [(d, d), (d, kv), (d, kv), (d, d), (d, ff), (d, ff), (ff, d)]
    r = 4
    expected = r * sum(i + o for i, o in shapes) * arch["num_hidden_layers"]
    assert expected == 4 * 1024 * 2

    entry = lora_run["artifacts"][0]
    assert entry["kind"] == "adapter" and entry["path"] == f"artifacts/{lora_run['run_id']}"
    directory = results / entry["path"]
    weights = directory / "adapter_model.safetensors"
    tensor_bytes, n = 0, 0
    with safe_open(weights, "pt") as f:
        for key in f.keys():
            t = f.get_tensor(key)
            assert t.dtype.is_floating_point and t.element_size() == 4, (key, t.dtype)  # fp32 on CPU
            n += t.numel()
            tensor_bytes += t.numel() * t.element_size()
    assert n == expected == lora_run["metrics"]["trainable_params"]
    assert tensor_bytes == expected * 4  # 32 KiB
    assert 0 < weights.stat().st_size - tensor_bytes < 16_384  # the rest is the safetensors JSON header
    # The record lists every file with its real size; tokenizer and manifest are kept too.
    on_disk = {p.name: p.stat().st_size for p in directory.iterdir()}
    assert entry["files"] == on_disk and entry["bytes"] == sum(on_disk.values())
    assert {"adapter_config.json", "tokenizer.json", artifacts.MANIFEST} <= set(on_disk)
    manifest = json.loads((directory / artifacts.MANIFEST).read_text())
    assert manifest["run_id"] == lora_run["run_id"] and manifest["kind"] == "adapter"
    assert manifest["base"] == lora_run["model_identity"] and manifest["adapter"]["params"] == expected
    assert manifest["config"]["method"]["r"] == 4
    assert not [p for p in (results / "artifacts").iterdir() if p.name.startswith(".")]  # no temp dirs left


# ---------------------------------------------------------------- harness eval


def test_eval_reproduces_the_runs_own_score(lora_run, results, data, capsys):
    m = lora_run["metrics"]
    assert 0 < m["task_score"] < 1 and m["task_eval_n"] == 12  # learnt "yes": a score worth reproducing
    rc = dispatch(["eval", lora_run["run_id"], "--data", str(data["test"]), "--results", str(results), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["score"]["mean"] == pytest.approx(m["task_score"], abs=1e-9)
    assert out["score"]["stderr"] == pytest.approx(m["task_score_stderr"], abs=1e-9)
    assert out["score"]["n"] == 12 and out["scorer"] == "exact_match"
    # The evaluation record sits in evals/, never at the top level where run records live.
    path = Path(out["path"])
    assert path.parent == results / "evals" and path.name.startswith(lora_run["run_id"])
    assert json.loads(path.read_text())["score"] == out["score"]
    assert sorted(p.name for p in results.glob("*.json")) == sorted(f"{r}.json" for r in _ids(results))


def _ids(results: Path) -> list[str]:
    return [json.loads(p.read_text())["run_id"] for p in results.glob("*.json")]


def test_eval_accepts_an_artifact_dir_a_record_path_and_a_metric(lora_run, results, data):
    by_dir = eval_command.evaluate_run(str(results / "artifacts" / lora_run["run_id"]), str(data["test"]), limit=6)
    by_record = eval_command.evaluate_run(str(results / f"{lora_run['run_id']}.json"), str(data["test"]), limit=6, metric="contains")
    assert by_dir["score"]["n"] == by_record["score"]["n"] == 6
    assert by_dir["scorer"] == "exact_match" and by_record["scorer"] == "contains"
    assert Path(by_dir["path"]) != Path(by_record["path"])  # a different scorer is a different evaluation


def test_eval_uses_the_tickets_scorer_for_a_tickets_run(tmp_path):
    """A tickets run is scored by the tickets label check: "billing." counts as billing."""
    manifest = {"config": {"task": {"name": "tickets", "seed": 0, "n_train": 8, "n_validation": 4, "n_test": 4,
                                    "difficulty": None, "train_file": None, "eval_file": None, "metric": "exact_match"}}}
    task, examples, name = eval_command.scorer_for(manifest, "task", str(REPO / "harness/data/tickets_handwritten.jsonl"))
    assert name == "tickets" and len(examples) >= 48
    billing = next(ex for ex in examples if ex.answer == "billing")
    assert task.score("Billing.", billing) == 1.0 and task.score("urgent", billing) == 0.0


def test_eval_reruns_forgetting_probes(lora_run, results, data):
    out = eval_command.evaluate_run(lora_run["run_id"], str(data["test"]), results=str(results), limit=2, probes=("general_mc",), probe_limit=4)
    f = out["forgetting"]["general_mc"]
    assert f["n"] == 4 and 0 <= f["base"] <= 1 and 0 <= f["tuned"] <= 1
    assert f["delta"] == pytest.approx(f["base"] - f["tuned"])


# ---------------------------------------------------------------- harness export


def _base_plus_adapter(run: dict, results: Path):
    located = artifacts.locate(run["run_id"], results)
    return artifacts.load_trained(located)


@pytest.mark.parametrize("which", ["lora_run", "dora_run"])
def test_merged_export_matches_base_plus_adapter_and_loads_without_peft(which, request, results, tmp_path):
    run = request.getfixturevalue(which)
    out = tmp_path / "merged"
    assert dispatch(["export", run["run_id"], "--merge", "--out", str(out), "--results", str(results)]) == 0
    assert (out / "model.safetensors").is_file() and (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()

    model, tok = _base_plus_adapter(run, results)
    with model.disable_adapter():
        base = _logits(model, tok)
    tuned = _logits(model, tok)
    assert (tuned - base).abs().max() > 1e-3  # the adapter changes the output: the comparison means something

    # A fresh interpreter where `import peft` fails and tunebench is never imported.
    code = (
        "import sys, json; sys.modules['peft'] = None\n"
        "import torch; from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        f"m = AutoModelForCausalLM.from_pretrained({str(out)!r}); t = AutoTokenizer.from_pretrained({str(out)!r})\n"
        "enc = t(['Is 5 fine? yes', 'The quick brown fox'], return_tensors='pt', padding=True)\n"
        "with torch.inference_mode(): logits = m(**enc).logits.float()\n"
        "assert not any(k == 'harness' or k.startswith('harness.') for k in sys.modules)\n"
        "assert sys.modules['peft'] is None and type(m).__name__ == 'LlamaForCausalLM'\n"
        "print(json.dumps(logits.tolist()))\n"
    )
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    import torch

    merged = torch.tensor(json.loads(res.stdout.strip().splitlines()[-1]))
    assert (merged - tuned).abs().max().item() < 1e-4  # fp32


def test_save_merged_equals_export_merge(lora_run, results, data, tmp_path):
    """train.save=merged writes the same model `export --merge` makes from the adapter (same training, same seed)."""
    import torch
    from transformers import AutoModelForCausalLM

    other = tmp_path / "runs"
    merged_run = _run(other, *LORA[:-1], "train.save=merged", *_custom(data))
    assert merged_run["run_id"] == lora_run["run_id"]  # train.save is not part of the run's identity
    entry = merged_run["artifacts"][0]
    assert entry["kind"] == "model" and "model.safetensors" in entry["files"] and "adapter_model.safetensors" not in entry["files"]
    exported = tmp_path / "exported"
    assert dispatch(["export", lora_run["run_id"], "--merge", "--out", str(exported), "--results", str(results)]) == 0
    a = AutoModelForCausalLM.from_pretrained(other / entry["path"]).state_dict()
    b = AutoModelForCausalLM.from_pretrained(exported).state_dict()
    assert a.keys() == b.keys()
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-6


def test_full_finetuning_saves_safetensors_and_exports_a_copy(results, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    run = _run(results, "method=full", "train.max_steps=3", "eval.enabled=false", "train.save=adapter")
    entry = run["artifacts"][0]
    assert entry["kind"] == "model" and "model.safetensors" in entry["files"]
    total = run["metrics"]["total_params"]
    assert entry["files"]["model.safetensors"] >= total * 4  # fp32 weights (tied embeddings stored once)
    manifest = json.loads((results / entry["path"] / artifacts.MANIFEST).read_text())
    assert "no adapter" in manifest["note"]

    out = tmp_path / "full"
    assert dispatch(["export", run["run_id"], "--merge", "--out", str(out), "--results", str(results)]) == 0
    assert "copied the saved model" in capsys.readouterr().out
    saved = AutoModelForCausalLM.from_pretrained(results / entry["path"]).state_dict()
    copied = AutoModelForCausalLM.from_pretrained(out).state_dict()
    assert all(torch.equal(saved[k], copied[k]) for k in saved)


def test_artifact_failure_is_a_warning_not_a_lost_run(results, monkeypatch):
    def disk_full(tmp, *a, **k):
        (tmp / "partial.bin").write_bytes(b"x" * 10)
        raise OSError("No space left on device")

    monkeypatch.setattr(artifacts, "_fill", disk_full)
    run = _run(results, "train.max_steps=2", "eval.enabled=false", "train.save=adapter", "seed=7")
    assert run["status"] == "ok" and run["artifacts"] == [] and run["metrics"]["tokens_per_s"] > 0
    assert any("No space left on device" in w and "train.save=adapter" in w for w in run["warnings"])
    on_disk = json.loads((results / f"{run['run_id']}.json").read_text())
    assert on_disk["warnings"] == run["warnings"]
    assert not (results / "artifacts" / run["run_id"]).exists()
    assert not [p for p in (results / "artifacts").iterdir() if p.name.startswith(".")]  # the temp dir is gone


# ---------------------------------------------------------------- bad input: one line, exit 2


def _err(capsys, *argv) -> str:
    capsys.readouterr()  # drop what earlier steps printed (progress bars)
    rc = dispatch(list(argv))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, (rc, err)
    return err


def test_unknown_run_id_suggests_the_close_one(lora_run, results, data, capsys):
    typo = lora_run["run_id"][:-1] + ("x" if lora_run["run_id"][-1] != "x" else "y")
    err = _err(capsys, "eval", typo, "--data", str(data["test"]), "--results", str(results))
    assert f"unknown run '{typo}'" in err and f"did you mean '{lora_run['run_id']}'" in err
    err = _err(capsys, "export", "nothing-like-it", "--merge", "--out", "/tmp/never", "--results", str(results))
    assert "unknown run 'nothing-like-it'" in err and "did you mean" not in err
    err = _err(capsys, "eval", "x", "--data", str(data["test"]), "--results", str(results / "nope"))
    assert "results directory not found" in err


def test_run_saved_with_none_has_no_artifact(results, data, capsys):
    run = _run(results, "train.max_steps=2", "eval.enabled=false", "train.save=none", "seed=3")
    assert run["artifacts"] == [] and not (results / "artifacts" / run["run_id"]).exists()
    err = _err(capsys, "eval", run["run_id"], "--data", str(data["test"]), "--results", str(results))
    assert run["run_id"] in err and "train.save=none" in err
    err = _err(capsys, "export", run["run_id"], "--merge", "--out", "/tmp/never", "--results", str(results))
    assert "train.save=none" in err


def test_malformed_jsonl_names_file_and_line(lora_run, results, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}]}\n{"messages": [oops\n')
    err = _err(capsys, "eval", lora_run["run_id"], "--data", str(bad), "--results", str(results))
    assert f"{bad}:2" in err and "not valid JSON" in err
    err = _err(capsys, "eval", lora_run["run_id"], "--data", str(tmp_path / "missing.jsonl"), "--results", str(results))
    assert "data file not found" in err


def test_other_bad_options(lora_run, results, data, tmp_path, capsys):
    err = _err(capsys, "eval", lora_run["run_id"], "--data", str(data["test"]), "--results", str(results), "--metric", "exact_mach")
    assert "did you mean 'exact_match'" in err
    err = _err(capsys, "eval", lora_run["run_id"], "--data", str(data["test"]), "--results", str(results), "--probes", "general_mcc")
    assert "unknown probe 'general_mcc'" in err
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep me")
    err = _err(capsys, "export", lora_run["run_id"], "--merge", "--out", str(full), "--results", str(results))
    assert "not empty" in err and (full / "x").read_text() == "keep me"


def test_cli_subprocess_exit_code(results, data):
    res = cli("eval", "no-such-run", "--data", str(data["test"]), "--results", str(results))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    lines = [line for line in res.stderr.strip().splitlines() if "error:" in line]
    assert len(lines) == 1 and lines[0].startswith("harness eval: error: unknown run 'no-such-run'"), res.stderr


# ---------------------------------------------------------------- QLoRA (bitsandbytes on CPU: slow)


@pytest.mark.slow
def test_qlora_export_merges_into_the_dequantized_base(results, tmp_path, capsys):
    run = _run(results, "method=qlora", "method.r=4", "train.lr=0.02", "train.max_steps=4", "eval.enabled=false", "train.save=adapter")
    out = tmp_path / "q"
    assert dispatch(["export", run["run_id"], "--merge", "--out", str(out), "--results", str(results)]) == 0
    assert "dequantized NF4 base (fp32)" in capsys.readouterr().out
    from transformers import AutoModelForCausalLM

    import torch
    from peft import PeftModel

    m = AutoModelForCausalLM.from_pretrained(out)
    assert not hasattr(m.config, "quantization_config")
    located = artifacts.locate(run["run_id"], results)
    tok = artifacts.load_trained(located)[1]
    # The merge itself is exact: dequantized base + unmerged adapter == merged model (fp32).
    dequantized = artifacts.load_base(located.manifest, "cpu").model.dequantize(dtype=torch.float32)
    unmerged = PeftModel.from_pretrained(dequantized, str(located.directory))
    merged = _logits(m, tok)
    assert (merged - _logits(unmerged, tok)).abs().max().item() < 1e-4
    # Against the NF4 model + adapter it agrees to the CPU 4-bit kernel's precision (measured:
    # 2.6e-3 max |Δlogit| for the tiny base alone, logits ~1); the adapter must matter more than that.
    quantized, _ = artifacts.load_trained(located)
    q = _logits(quantized, tok)
    assert (merged - q).abs().max().item() < 1e-2
    with quantized.disable_adapter():
        assert (_logits(quantized, tok) - q).abs().max().item() > 1e-2
