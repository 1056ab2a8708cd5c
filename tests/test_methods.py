"""Every method learns on the tiny model, and the physics between methods holds.

Tiny = random-init 2-layer Llama (~0.17M params): learning is checked as the mean of the first
three train losses against the mean of the last three, at a high lr (3e-3..5e-3) for 12-20 steps.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.config import load_spec
from harness.errors import UserError
from harness.run import execute

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable


def _spec(tmp_path, *overrides):
    return load_spec(["debug=smoke", f"results_dir={tmp_path}", "eval.enabled=false", *overrides])


def _learned(record, margin=0.05):
    assert record["status"] == "ok", record["error"]
    losses = record["metrics"]["train_losses"]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last < first - margin, f"loss did not fall: {losses}"
    return first, last


def _harness(*args, cwd=REPO):
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run([PY, "-m", "harness", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


# ---------------------------------------------------------------- learning, one method at a time


def test_full_learns_through_the_cli(tmp_path):
    res = _harness("debug=smoke", "method=full", "train.lr=3e-3", "train.max_steps=12", "eval.enabled=false", f"results_dir={tmp_path}")
    assert res.returncode == 0, res.stderr[-2000:]
    (path,) = tmp_path.glob("full-tiny-*.json")
    record = json.loads(path.read_text())
    _learned(record)
    m = record["metrics"]
    assert m["trainable_params"] == m["total_params"]


@pytest.mark.parametrize(
    "method, overrides",
    [
        ("lora", []),
        ("qlora", []),
        ("dora", []),
        ("dora", ["method.quantize=4bit"]),  # QDoRA
    ],
)
def test_adapter_methods_learn(tmp_path, method, overrides):
    spec = _spec(tmp_path, f"method={method}", "train.lr=5e-3", "train.max_steps=12", *overrides)
    record = execute(spec)
    _learned(record)
    m = record["metrics"]
    assert 0 < m["trainable_params"] < m["total_params"]


def test_full_with_8bit_adam_learns_on_cpu_with_bitsandbytes_uint8_states(tmp_path, monkeypatch):
    """The optimizer the run really stepped is bitsandbytes' 8-bit AdamW, and after a step its
    states are uint8 (a plain AdamW in its place would learn too, with fp32 states)."""
    import bitsandbytes as bnb
    import torch

    from harness import train

    seen = {}
    on_step_end = train.MeasureCallback.on_step_end

    def spy(self, args, state, control, **kw):
        if not seen:
            opt = getattr(kw["optimizer"], "optimizer", kw["optimizer"])  # accelerate wraps it
            seen["optimizer"] = opt
            seen["dtypes"] = {v.dtype for st in opt.state.values() for k, v in st.items() if k in ("state1", "state2")}
            seen["big"] = sum(p.numel() >= 4096 for g in opt.param_groups for p in g["params"])
        return on_step_end(self, args, state, control, **kw)

    monkeypatch.setattr(train.MeasureCallback, "on_step_end", spy)
    record = execute(_spec(tmp_path, "method=full", "train.lr=3e-3", "train.max_steps=12", "train.optimizer=adamw8bit"))
    _learned(record)
    # transformers' adamw_bnb_8bit is bnb.optim.AdamW with optim_bits=8
    assert isinstance(seen["optimizer"], bnb.optim.optimizer.Optimizer8bit), type(seen["optimizer"])
    assert seen["optimizer"].args.optim_bits == 8
    # bitsandbytes keeps tensors under 4096 elements (norms) in fp32; the tiny model's embedding and
    # projections are larger, so uint8 states must be there.
    assert seen["big"] > 0 and torch.uint8 in seen["dtypes"], seen["dtypes"]


def _yes_task(tmp_path) -> list[str]:
    """A task the tiny model learns in ~12 steps: every training answer is "yes"; 8 of 12 test
    answers are (the rest "no"), so a model that learned scores 8/12 and the random base 0."""
    def write(path, rows):
        path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}) + "\n"
                                for q, a in rows))
        return path

    train = write(tmp_path / "train.jsonl", [(f"Is {i} fine?", "yes") for i in range(32)])
    test = write(tmp_path / "test.jsonl", [(f"Is {i} fine?", "no" if i % 3 == 0 else "yes") for i in range(100, 112)])
    return ["task=custom", f"task.train_file={train}", f"task.eval_file={test}", "task.n_train=0", "eval.limit=null"]  # all rows (debug=smoke asks for 64)


@pytest.mark.parametrize("inner", ["full", "lora"])
def test_fsdp_learns_shards_and_brings_the_trained_weights_back(tmp_path, inner):
    """Evaluation on: the score after training is the parent's model with the ranks' weights loaded
    back, so it beats the base only if they really came back."""
    spec = load_spec(["debug=smoke", f"results_dir={tmp_path}", "method=fsdp", f"method.inner={inner}", "method.r=4",
                      "train.lr=0.02", "train.max_steps=12", "method.world_size=2",
                      # shuffled: the order this 12-step, lr 0.02 check was calibrated on; with every row the same
                      # length, by_length batching only reorders, and full FT at this lr is sensitive to order
                      "train.batching=shuffled", *_yes_task(tmp_path)])
    record = execute(spec)
    _learned(record)
    m = record["metrics"]
    assert m["world_size"] == 2 and m["fsdp_backend"] == "gloo"
    assert m["task_score_base"] == 0.0 and m["task_score"] >= 0.5, (m["task_score_base"], m["task_score"])
    if inner == "full":
        # Per-rank parameters ≈ 1/world_size: FSDP2 pads each shard to a multiple of world_size rows.
        assert abs(m["params_per_rank_fraction"] - 0.5) < 0.05, m["params_per_rank_fraction"]
    else:
        assert 0 < m["trainable_params"] < m["total_params"]
    assert m["memory_kind"].endswith("_max_over_ranks")
    assert m["tokens_per_s"] > 0


def test_fsdp_rank_failure_reaches_the_record(tmp_path, monkeypatch):
    """A failing rank's error file becomes the run's error; the job's exit status is kept too."""
    from harness.methods import fsdp

    script = ("import json,sys,pathlib; d=pathlib.Path(sys.argv[1]); "
              "(d/'error.rank1.json').write_text(json.dumps({'rank':1,'type':'RuntimeError','message':'boom on rank 1','traceback':'tb'})); sys.exit(1)")
    monkeypatch.setattr(fsdp, "torchrun_command", lambda spec, job_dir: [PY, "-c", script, str(job_dir)])
    record = execute(_spec(tmp_path, "method=fsdp", "train.max_steps=2"))
    assert record["status"] == "error"
    assert "fsdp rank 1 failed" in record["error"]["message"] and "boom on rank 1" in record["error"]["message"]
    assert (tmp_path / f"{record['run_id']}.json").exists()


def test_dpo_learns_preferences(tmp_path):
    # 16 pairs seen 8 times: a random-init model cannot read tickets in 16 steps, but it can learn these pairs.
    spec = _spec(tmp_path, "method=dpo", "train.lr=5e-3", "train.max_steps=16", "train.batch_size=8", "train.warmup_ratio=0.0",
                 "task=tickets_prefs", "task.n_train=16")
    record = execute(spec)
    first, _ = _learned(record, margin=0.02)
    assert abs(first - 0.693) < 0.05  # policy = reference at the start: loss = ln 2
    assert record["metrics"]["reward_margin_last"] > 0


def test_grpo_records_the_reward_its_reward_function_returns(tmp_path, monkeypatch):
    """Tiny cannot do arithmetic (its real reward is 0), so the task's reward is swapped for one that
    scores each completion by its length (0, 0.5 or 1): each logged step's reward must be the mean of
    what that function returned, so a reward stuck at 0 or read from the wrong log key fails here."""
    from harness.methods import grpo

    returned: list[list[float]] = []

    def by_length(completions, answer, **kw):
        out = [(len(str(c)) % 3) / 2 for c in completions]
        returned.append(out)
        return out

    monkeypatch.setattr(grpo, "task_reward", lambda task: by_length)
    spec = _spec(tmp_path, "method=grpo", "task=arithmetic", "train.max_steps=3", "method.options.max_completion_length=8")
    record = execute(spec)
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    assert len(m["rewards"]) == 3 and len(returned) == 3
    assert m["rewards"] == pytest.approx([sum(r) / len(r) for r in returned], abs=1e-6)
    assert any(0 < r < 1 for r in m["rewards"]) or len({tuple(r) for r in returned}) > 1
    assert m["reward_first"] is not None and m["reward_last"] is not None
    assert 0 < m["completion_length"] <= 8
    assert m["kl"] is not None  # beta > 0 by default
    assert m["tokens_trained"] > 0 and m["tokens_per_s"] > 0


def test_grpo_reward_is_the_checker():
    from harness.methods.grpo import task_reward
    from harness.tasks import get_task

    reward = task_reward(get_task(load_spec(["task=arithmetic"]).task))
    assert reward(["7", [{"role": "assistant", "content": "3 + 4 = 7"}], "8", ""], answer=["7", "7", "7", "7"]) == [1.0, 1.0, 0.0, 0.0]


@pytest.mark.slow
def test_grpo_reward_rises_on_smollm2(tmp_path):
    """Measured here (2 cores, ~8.5 min): mean reward 0.12 over the first 10 steps → 0.26 over the last 10
    (each step's mean over 16 completions: binomial sd ≈ 0.1, so 2 se of the difference ≈ 0.09)."""
    spec = load_spec(["model=smollm2-135m", "method=grpo", "task=arithmetic", f"results_dir={tmp_path}", "eval.enabled=false",
                      "train.max_steps=30", "train.batch_size=16", "train.warmup_ratio=0.0"])
    record = execute(spec)
    assert record["status"] == "ok", record["error"]
    m = record["metrics"]
    rewards = m["rewards"]
    first, last = rewards[:10], rewards[-10:]
    mean = lambda xs: sum(xs) / len(xs)  # noqa: E731
    var = lambda xs: sum((x - mean(xs)) ** 2 for x in xs) / (len(xs) - 1)  # noqa: E731
    # A margin of 2 standard errors of the difference of the two means (the step-to-step spread of
    # each window): without learning, this passes ~2% of the time, not ~50% as `last > first` did.
    se = ((var(first) + var(last)) / 10) ** 0.5
    assert mean(last) - mean(first) > 2 * se, (rewards, se)


# ---------------------------------------------------------------- options and their errors


def test_lora_target_presets_and_alpha(tmp_path):
    from harness import models
    from harness.methods import get_method
    from harness.methods.base import count_params

    counts = {}
    for targets in ("q_proj+v_proj", "attn", "all-linear", "all-linear+lm_head", "attn+lm_head", "lm_head"):
        spec = _spec(tmp_path, "method=lora", f"method.targets={targets}", "method.r=4")
        loaded = models.load(spec.model, seed=0, dtype=models.resolve_dtype("fp32", "cpu"), device="cpu")
        model = get_method("lora").prepare(loaded.model, spec.method, spec.train)
        counts[targets] = count_params(model)[0]
        assert model.peft_config["default"].lora_alpha == 8  # alpha: null → 2r
    assert counts["q_proj+v_proj"] < counts["attn"] < counts["all-linear"]
    # a preset joined with a module name adapts both (not only the name peft finds in the list)
    assert counts["all-linear+lm_head"] == counts["all-linear"] + counts["lm_head"]
    assert counts["attn+lm_head"] == counts["attn"] + counts["lm_head"]


def test_bad_options_are_one_line_errors(tmp_path):
    res = _harness("debug=smoke", "method=grpo", "task=tickets", f"results_dir={tmp_path}")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1] == ("harness: error: method=grpo needs a task with a verifiable reward; "
                                                   "task 'tickets' has none (try task=arithmetic)")
    assert not list(tmp_path.glob("*.json"))
    with pytest.raises(UserError, match="preference pairs"):
        execute(_spec(tmp_path, "method=dpo"))
    with pytest.raises(UserError, match="method.inner 'bogus'"):
        execute(_spec(tmp_path, "method=fsdp", "method.inner=bogus"))
    with pytest.raises(UserError, match="unknown grpo option 'method.options.num_gen'"):
        execute(_spec(tmp_path, "method=grpo", "task=arithmetic", "+method.options.num_gen=2"))
    with pytest.raises(UserError, match="method.targets 'nope_proj'"):
        execute(_spec(tmp_path, "method=lora", "method.targets=nope_proj"))


# ---------------------------------------------------------------- the physics between methods


def test_physics_trainable_and_weight_memory(tmp_path):
    """full trains more than lora; the NF4 base weighs a fraction of the fp32 one."""
    import torch

    from harness import models
    from harness.methods import get_method
    from harness.methods.base import count_params, weight_bytes

    def prepared(method):
        spec = _spec(tmp_path, f"method={method}", "method.r=16")  # the same rank for both adapter methods
        m = get_method(method)
        loaded = models.load(spec.model, seed=0, dtype=torch.float32, device="cpu", **m.load_kwargs(spec.method))
        return m.prepare(loaded.model, spec.method, spec.train)

    full, lora, qlora = prepared("full"), prepared("lora"), prepared("qlora")
    assert count_params(full)[0] > 4 * count_params(lora)[0]
    assert count_params(lora) == count_params(qlora)  # same adapters; 4-bit weights counted unpacked

    def linear_bytes(model):
        # The quantized part only: the adapted Linear layers' base weights (embeddings stay fp32 in both).
        total = 0
        for name, p in model.named_parameters():
            if name.endswith("base_layer.weight"):
                total += p.numel() * p.element_size()
                qs = getattr(p, "quant_state", None)
                if qs is not None:
                    total += qs.absmax.numel() * qs.absmax.element_size()
        assert total > 0
        return total

    ql, ll = linear_bytes(qlora), linear_bytes(lora)
    # NF4: 0.5 B/weight + 8-bit absmax per 64 → ~0.52 B vs fp32's 4 B: ~13%.
    assert ql < 0.2 * ll, (ql, ll)
    q_all, l_all = weight_bytes(qlora)["total_bytes"], weight_bytes(lora)["total_bytes"]
    assert q_all < 0.8 * l_all, (q_all, l_all)  # the fp32 embedding (65K of 172K tiny params) stays
    assert qlora.get_memory_footprint() < lora.get_memory_footprint()


def test_qlora_keeps_its_gradient_after_an_eval_forward(tmp_path, monkeypatch):
    """bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks a Linear4bit's weight for inference on its
    first eval-mode, no-grad forward, and from then on runs it through a kernel without autograd:
    training after the base-score evaluation silently lost the gradient through every 4-bit layer
    (QLoRA on SmolLM2 stopped learning). ``models.load`` turns the repacking off for 4-bit models,
    and ``keep_4bit_trainable`` also undoes a repacking that already happened.

    The repack is forced here (bitsandbytes' flag set as on such a CPU), so this runs on any CPU:
    first the gradient is shown broken by the repack, then restored by the fix."""
    import bitsandbytes.nn.modules as bnb_modules
    import torch

    from harness import models

    # Load as on an AVX512-BF16 CPU: every Linear4bit is built with the repack flag on.
    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    spec = _spec(tmp_path, "method=qlora")
    model = models.load(spec.model, seed=0, dtype=torch.float32, device="cpu", quantize="4bit").model
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit"]
    assert len(layers) == 2 * 7  # 2 layers × (q, k, v, o, gate, up, down)

    def eval_forward(lin):
        model.eval()
        with torch.no_grad():
            w_t = lin(torch.eye(lin.in_features))  # (in, out) = W^T; the forward that repacks
        model.train()
        return w_t

    def gradient_error(lin, w_t) -> float:
        x = torch.randn(2, 3, lin.in_features, requires_grad=True)
        g = torch.randn(2, 3, lin.out_features)
        out = lin(x)
        if not out.requires_grad:
            return math.inf  # no graph through the layer at all
        (out * g).sum().backward()
        if x.grad is None:
            return math.inf
        expected = g @ w_t.T
        return float((x.grad - expected).norm() / expected.norm())

    repacked = lambda lin: bool(getattr(lin.weight.quant_state, "packing_format_for_cpu", False))  # noqa: E731

    # 1. models.load turned the flag off: an eval forward leaves the layout alone, training works.
    first = layers[0]
    assert not first.support_avx512bf16_for_cpu
    w_t = eval_forward(first)
    assert not repacked(first)
    assert gradient_error(first, w_t) < 1e-2  # 1e-2: a bf16 eval kernel differs from fp32 by ~3e-3

    # 2. Force the repack on another layer: without the fix its gradient is gone.
    second = layers[1]
    second.support_avx512bf16_for_cpu = True
    w_t = eval_forward(second)
    assert repacked(second), "the forced flag did not repack: the test would prove nothing"
    # The one place the suite backpropagates through gemv_4bit, on purpose: torch says so, and
    # pyproject turns that warning into an error everywhere else, so no training path can take it.
    with pytest.warns(UserWarning, match="gemv_4bit: an autograd kernel was not registered"):
        broken = gradient_error(second, w_t)
    assert broken > 0.5, "the repacked layer kept its gradient: the bug did not reproduce"

    # 3. The fix undoes the repack: the gradient is back.
    second.support_avx512bf16_for_cpu = True
    eval_forward(second)
    assert models.keep_4bit_trainable(model) == 2 * 7
    assert not repacked(second)
    assert gradient_error(second, w_t) < 1e-2
