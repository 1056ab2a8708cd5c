"""The command line: outputs, JSON keys, one-line errors with exit code 2, and no torch on the way."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from advisor_testkit import make_record, write

REPO = Path(__file__).resolve().parents[2]
RECIPE_KEYS = {"method", "model", "rank", "feasible", "estimated_peak_gb", "budget_gb", "alternatives", "rules", "warnings"}


def test_recommend_json_has_the_promised_keys(run_cli):
    code, out, err = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--capability", "style", "--model", "7B", "--json")
    assert code == 0, err
    d = json.loads(out)
    assert RECIPE_KEYS <= set(d)
    assert d["method"] == "lora" and d["model"] == "Llama-2-7B" and d["feasible"] is True
    assert d["estimated_peak_gb"] < d["budget_gb"] == 24
    assert set(d["memory"]["breakdown_gb"]) == {"weights", "gradients", "optimizer_states", "activations", "adapter",
                                                "quant_constants", "logits", "runtime_overhead"}  # fmt: skip
    assert all({"id", "quote"} <= set(r) for r in d["rules"])
    assert all({"option", "why_not"} <= set(a) for a in d["alternatives"])
    for key in ("learning_rate", "epochs", "batch_size", "grad_accum", "grad_checkpointing", "time_per_epoch_s", "alpha", "targets"):
        assert d[key] is not None, key


def test_recommend_for_humans(run_cli):
    code, out, _ = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--capability", "style", "--model", "7B")
    assert code == 0
    for text in ("lora on Llama-2-7B", "Alternatives considered", "Rules applied", "R-GPU-24-7B", "Warnings", "peak memory"):
        assert text in out


def test_emit_harness_prints_the_command(run_cli):
    code, out, _ = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--model", "7B", "--emit", "harness")
    line = out.strip()
    assert code == 0 and line.count("\n") == 0 and line.startswith("python -m harness ")
    for part in ("model=hub", "model.name_or_path=meta-llama/Llama-2-7b-hf", "method=lora", "method.r=16", "method.alpha=32",
                 "train.lr=2e-4", "train.max_steps=-1", "train.grad_checkpointing=", "task=custom", "budget_gb=24"):  # fmt: skip
        assert part in line, part


def test_emit_harness_for_fsdp_and_the_harness_model(run_cli):
    _, out, _ = run_cli("recommend", "--gpu", "4x24GB", "--examples", "3000", "--model", "70B", "--emit", "harness")
    assert "method=fsdp" in out and "method.inner=lora" in out and "method.quantize=4bit" in out and "method.world_size=4" in out
    _, out, _ = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--model", "smollm2-135m", "--emit", "harness")
    assert "model=smollm2-135m" in out and "model=hub" not in out


def test_explain_prints_the_decision_path(run_cli):
    code, out, _ = run_cli("explain", "--gpu", "24GB", "--examples", "3000", "--capability", "style", "--model", "7B")
    assert code == 0
    for text in ("1. Data", "2. Objective", "Budget table", "Hyperparameters", "→ lora on Llama-2-7B"):
        assert text in out
    code, out, _ = run_cli("explain", "--gpu", "24GB", "--examples", "5", "--json")
    d = json.loads(out)
    assert d["steps"][0]["rules"] == ["R-DATA-LT10"] and d["recipe"]["method"] == "none"


def test_estimate_json_has_reserved_above_allocated_above_weights_and_per_gpu_when_sharded(run_cli):
    code, out, _ = run_cli("estimate", "--model", "7B", "--method", "qlora", "--rank", "16", "--targets", "all-linear",
                           "--batch-size", "4", "--seq-len", "1024", "--grad-checkpointing", "--json")  # fmt: skip
    d = json.loads(out)
    assert code == 0 and {"peak_allocated_gb", "peak_reserved_gb", "breakdown"} <= set(d)
    assert d["peak_reserved_gb"] > d["peak_allocated_gb"] > d["breakdown"]["weights"]
    _, out, _ = run_cli("estimate", "--model", "70B", "--method", "full", "--gpus", "8", "--no-grad-checkpointing",
                        "--precision", "bf16-mixed", "--optimizer", "adamw8bit", "--json")  # fmt: skip
    assert json.loads(out)["per_gpu"] is True


def test_kbit_prep_and_bf16_true_are_the_users_to_set(run_cli):
    """--no-kbit-prep keeps a QLoRA model's embeddings, head and norms in bf16 (a bf16 residual stream: Unsloth,
    fms-acceleration); --kbit-prep asks torchtune for peft's fp32 upcast; --precision bf16-true drops autocast."""
    def peak(*flags):
        code, out, _ = run_cli("estimate", "--model", "Llama-3.1-8B", "--method", "qlora", "--batch-size", "4",
                               "--seq-len", "2048", "--grad-checkpointing", "--json", *flags)  # fmt: skip
        assert code == 0
        return json.loads(out)["peak_allocated_gb"]

    hf, no_prep = peak(), peak("--no-kbit-prep")
    assert peak("--kbit-prep") == hf > no_prep  # the hf stack prepares by default
    assert peak("--stack", "torchtune", "--kbit-prep") > peak("--stack", "torchtune")
    code, out, _ = run_cli("estimate", "--model", "Llama-3.1-8B", "--method", "lora", "--precision", "bf16-true", "--json")
    assert code == 0 and json.loads(out)["setup"]["precision"] == "bf16-true"


def test_estimate_for_humans_and_cpu(run_cli):
    code, out, _ = run_cli("estimate", "--model", "smollm2-135m", "--method", "full", "--precision", "fp32", "--device", "cpu")
    assert code == 0 and "CPU resident" in out and "peak allocated" in out


def test_validate_reports_mape(run_cli, tmp_path):
    write(tmp_path, make_record("cpu-run"))
    code, out, _ = run_cli("validate", str(tmp_path), "--json")
    d = json.loads(out)
    assert code == 0 and d["published"]["mape_pct"] <= 15
    assert d["published"]["excluded"][0]["id"] == "D5"
    assert d["harness"]["rows"][0]["metric"] == "cpu_rss_delta"
    code, out, _ = run_cli("validate", str(tmp_path))
    assert code == 0 and "MAPE" in out and "excluded D5" in out


def test_catalog_listings(run_cli):
    assert "Llama-3.1-70B" in run_cli("models")[1]
    assert {g["name"] for g in json.loads(run_cli("gpus", "--json")[1])} >= {"T4", "H200", "A10G"}


def test_evidence_from_results_dir(run_cli, tmp_path):
    for i, (method, score) in enumerate([("lora", 0.60), ("lora", 0.61), ("dora", 0.90), ("dora", 0.91)]):
        write(tmp_path / "runs", make_record(f"{method}-{i}", method="lora", use_dora=method == "dora", task_score=score, stderr=0.02))
    code, out, err = run_cli("recommend", "--gpu", "24GB", "--examples", "3000", "--model", "smollm2-135m",
                             "--results", str(tmp_path), "--json")  # fmt: skip
    d = json.loads(out)
    assert code == 0, err
    assert len(d["evidence"]) == 4 and all(e["estimated_peak_gb"] for e in d["evidence"])
    assert d["method"] == "dora"  # measured significantly ahead on this model: the evidence overrides the rule of thumb
    assert any(s["title"] == "Evidence overrides" for s in d["steps"])


# ---------------------------------------------------------------- bad input: one line, exit 2


BAD = [
    (["recommend", "--gpu", "24XB", "--examples", "3000"], "--gpu: '24XB' is not a GPU budget; use e.g. 24GB, A10G, 8xH100"),
    (["recommend", "--gpu", "24GB", "--examples", "-5"], "--examples: '-5' must be a whole number >= 0"),
    (["recommend", "--gpu", "24GB", "--examples", "many"], "--examples: 'many'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--capability", "styel"], "--capability: 'styel' is not one of"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--capability", "poetry"], "--capability: 'poetry'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--model", "lama-2-7b"], "did you mean 'Llama-2-7B'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--model", "gpt-9"], "--model: unknown model 'gpt-9'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--auditability", "hgh"], "did you mean 'high'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--seq-len", "0"], "--seq-len: '0'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--preference-pairs", "-1"], "--preference-pairs: '-1'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--emit", "slurm"], "--emit: 'slurm'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--results", "/nonexistent/dir"], "--results: '/nonexistent/dir'"),
    (["recommend", "--gpu", "24GB"], "--examples: required"),
    (["recommend", "--examples", "3000"], "required: --gpu"),
    (["explain", "--gpu", "A100", "--examples", "3000"], "--gpu: 'A100' is ambiguous"),
    (["estimate", "--model", "7B", "--method", "qlor"], "did you mean 'qlora'"),
    (["estimate", "--model", "7B", "--targets", "mlp"], "--targets: 'mlp'"),
    (["estimate", "--model", "7B", "--precision", "fp8"], "--precision: 'fp8'"),
    (["estimate", "--model", "7B", "--optimizer", "adam"], "did you mean 'adamw'"),
    (["estimate", "--model", "7B", "--gpus", "0"], "--gpus: '0'"),
    (["estimate", "--model", "7B", "--batch-size", "x"], "--batch-size: 'x'"),
    (["estimate", "--model", "nope"], "--model: unknown model 'nope'"),
    (["estimate", "--model", "7B", "--kernels", "ligr"], "--kernels: unknown kernel 'ligr'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--kernels", "rms_norm+flash"], "--kernels: unknown kernel 'flash'"),
    (["validate", "/nonexistent/dir"], "'/nonexistent/dir' is not a directory"),
    (["recomend"], "did you mean 'recommend'"),
    (["recommend", "--gpu", "24GB", "--examples", "3000", "--frob"], "unrecognized arguments: --frob"),
]


@pytest.mark.parametrize("argv,message", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(run_cli, argv, message):
    code, out, err = run_cli(*argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("advisor: error: ")
    assert message in err
    assert "Traceback" not in err


def test_subprocess_bad_input_has_no_traceback():
    res = subprocess.run([sys.executable, "-m", "advisor", "recommend", "--gpu", "24XB", "--examples", "3000"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert res.returncode == 2
    assert res.stderr == "advisor: error: --gpu: '24XB' is not a GPU budget; use e.g. 24GB, A10G, 8xH100 (known GPUs: " + \
        "T4, L4, A10G, RTX 3090, RTX 4090, A6000, L40S, A100-40GB, A100-80GB, H100, H200)\n"
    assert res.stdout == ""


NO_TORCH = """
import sys
from advisor.cli import main
assert main(["recommend", "--gpu", "24GB", "--examples", "3000", "--json"]) == 0
assert main(["recommend", "--gpu", "24GB", "--examples", "3000"]) == 0
assert main(["estimate", "--model", "7B"]) == 0
assert main(["estimate", "--model", "7B", "--json"]) == 0
import advisor.simulate  # the --simulate package itself imports torch only when a simulation runs
heavy = sorted(m for m in ("torch", "transformers", "pandas") if m in sys.modules)
print("HEAVY", heavy, file=sys.stderr)
sys.exit(1 if heavy else 0)
"""


def test_recommend_path_imports_no_torch_transformers_or_pandas():
    res = subprocess.run([sys.executable, "-c", NO_TORCH], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr[-500:]
    assert "HEAVY []" in res.stderr
