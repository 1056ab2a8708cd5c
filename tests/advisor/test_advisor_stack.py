"""Stack options (--loss, --checkpointing, --offload, --precision, --float8, --lora-experts), unknown
architectures refused, context length checked: each by the mechanism that moves the figure."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from advisor.inputs.catalog import GIB, MODELS
from advisor.memory.activations import fused_chunk_tokens, layer_activation_bytes, logits_bytes_per_element, loss_bytes
from advisor.memory.estimate import estimate
from advisor.memory.setup import Setup

HYBRID = Path(__file__).resolve().parent / "data" / "hybrid"
L8 = MODELS["Llama-3.1-8B"].arch
MIX = MODELS["Mixtral-8x7B"].arch


def est(arch=L8, **kw):
    return estimate(Setup(arch=arch, **{"batch_size": 4, "seq_len": 2048, **kw}))


# ---------------------------------------------------------------- unknown architectures


@pytest.mark.parametrize("name", ["nemotron_h", "qwen3_next", "granitemoehybrid"])
def test_hybrid_architectures_are_refused_naming_the_type_and_simulate(run_cli, name):
    code, out, err = run_cli("estimate", "--model", str(HYBRID / f"{name}.json"), "--batch-size", "4", "--seq-len", "2048")
    assert (code, out) == (2, "")
    assert f"model_type '{name}'" in err and "--simulate" in err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_label_comes_from_the_config_not_its_folder(tmp_path, run_cli):
    folder = tmp_path / "configs"
    folder.mkdir()
    cfg = {"model_type": "llama", "architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2, "hidden_size": 64,
           "intermediate_size": 128, "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 512}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(cfg))
    _, out, _ = run_cli("estimate", "--model", str(folder / "config.json"), "--json")
    assert json.loads(out)["model"].startswith("LlamaForCausalLM (")
    (folder / "config.json").write_text(json.dumps({**cfg, "_name_or_path": "acme/Tiny-Llama-x"}))
    _, out, _ = run_cli("estimate", "--model", str(folder / "config.json"), "--json")
    assert json.loads(out)["model"].startswith("Tiny-Llama-x (") and "configs" not in out.split("\n")[1]


def test_seq_len_beyond_the_context_is_an_error_or_with_long_context_a_warning(tmp_path, run_cli):
    code, out, err = run_cli("estimate", "--model", "Llama-2-7B", "--seq-len", "99999999")
    assert (code, out) == (2, "") and "max_position_embeddings 4096" in err and err.count("\n") == 1
    code, out, err = run_cli("estimate", "--model", "Llama-2-7B", "--seq-len", "4096", "--json")
    assert code == 0 and err == ""
    code, out, err = run_cli("estimate", "--model", "Llama-2-7B", "--seq-len", "8192", "--long-context", "--json")
    assert code == 0 and "warning" in err and "max_position_embeddings 4096" in err and json.loads(out)["setup"]["seq_len"] == 8192
    code, _, err = run_cli("recommend", "--gpu", "80GB", "--examples", "3000", "--model", "Llama-2-7B", "--seq-len", "9000")
    assert code == 2 and "max_position_embeddings 4096" in err
    # learned absolute positions (SantaCoder's 2048-row table): no RoPE to scale, so no --long-context either
    from advisor.inputs import DATA

    santa = str(DATA / "configs" / "SantaCoder-1.1B.json")
    code, out, err = run_cli("estimate", "--model", santa, "--seq-len", "4096", "--long-context")
    assert (code, out) == (2, "") and "learned table of 2048 rows" in err and err.count("\n") == 1


# ---------------------------------------------------------------- --loss fused


def test_fused_loss_never_holds_the_logits_its_bytes_follow_hidden_not_vocab():
    std, fused = est(), est(loss="fused")
    tokens = 4 * 2048
    assert std.logits * GIB == pytest.approx(logits_bytes_per_element(Setup(arch=L8)) * tokens * L8.vocab)
    s = Setup(arch=L8, batch_size=4, seq_len=2048, loss="fused")
    assert fused_chunk_tokens(s, tokens) * L8.vocab <= 2 * tokens * L8.hidden  # one chunk ≈ the hidden states
    assert fused.peak_allocated_gb < std.peak_allocated_gb - 0.9 * std.logits
    # doubling the vocabulary doubles the standard loss's bytes; the fused one's stay within the chunk rounding
    big = replace(L8, vocab=2 * L8.vocab)
    assert est(big).logits == pytest.approx(2 * std.logits, rel=0.01)
    fused_bytes = lambda a: loss_bytes(Setup(arch=a, method="lora", loss="fused"), tokens)  # noqa: E731  (head frozen)
    assert fused_bytes(big) < 2.1 * fused_bytes(L8) and fused_bytes(L8) < 0.05 * std.logits * GIB


# ---------------------------------------------------------------- --checkpointing


def test_selective_checkpointing_keeps_matmul_and_attention_outputs_between_none_and_full():
    none, full, sel = (est(method="full", loss="fused", checkpointing=c, batch_size=16) for c in ("none", "full", "selective"))
    assert full.activations < sel.activations < none.activations and sel.peak_phase == "backward start"
    tokens = 16 * 2048
    kept = (2 * L8.hidden + 2 * (L8.q_dim + 2 * L8.kv_dim + L8.hidden + 2 * L8.intermediate + L8.hidden) + 2 * L8.q_dim
            + 4 * L8.heads)  # input, 7 matmul outputs, attention's output and fp32 log-sum-exp  # fmt: skip
    s = Setup(arch=L8, batch_size=16, seq_len=2048, method="full")
    from advisor.memory.activations import backward_working_bytes, head_activation_bytes

    at_layer = L8.layers * kept + layer_activation_bytes(s) + backward_working_bytes(s) + head_activation_bytes(s)
    assert sel.activations == pytest.approx(at_layer * tokens / GIB, rel=0.001)
    assert est(grad_checkpointing=True).peak_allocated_gb == est(checkpointing="full").peak_allocated_gb  # the alias


# ---------------------------------------------------------------- --offload activations


def test_activation_offload_keeps_two_layers_on_the_gpu_and_the_rest_on_the_host():
    base, off = est(loss="fused"), est(loss="fused", offload="activations")
    s = Setup(arch=L8, batch_size=4, seq_len=2048)
    per_layer = layer_activation_bytes(s) * 4 * 2048 / GIB
    assert base.activations - off.activations == pytest.approx((L8.layers - 2) * per_layer, rel=0.01)
    assert off.cpu_offload_gb == pytest.approx(L8.layers * per_layer, rel=0.01) and base.cpu_offload_gb == 0
    both = est(method="full", loss="fused", offload="optimizer+activations")
    states_host = L8.total_params * (2 * 2 + 2) / GIB  # bf16 AdamW states (2 × 2 B) + bf16 grads streamed to the host
    assert both.cpu_offload_gb == pytest.approx(L8.layers * layer_activation_bytes(replace(s, method="full")) * 4 * 2048 / GIB
                                                + states_host, rel=0.01)  # fmt: skip
    assert both.optimizer_states == 0


# ---------------------------------------------------------------- --precision bf16-mixed


def test_bf16_mixed_fp32_masters_and_autocast_copies_on_one_gpu_fsdp2_casts_at_gather():
    pure, mixed = est(method="full", batch_size=1, seq_len=256), est(method="full", batch_size=1, seq_len=256, precision="bf16-mixed")
    P = L8.total_params
    assert mixed.other_phase_gb > 0 and mixed.peak_phase == "optimizer step"
    assert mixed.gradients - pure.gradients == pytest.approx(P * 2 / GIB, rel=0.01)  # fp32 grads
    assert mixed.optimizer_states - pure.optimizer_states == pytest.approx(P * (8 + 4 - 4 - 2) / GIB, rel=0.01)  # states + foreach
    bw = lambda **kw: est(method="lora", batch_size=1, seq_len=256, **kw)  # noqa: E731  (backward-start peak)
    assert bw(precision="bf16-mixed").weights - 2 * bw().weights == pytest.approx(L8.linear_params * 2 / GIB, rel=0.01)
    # FSDP2 MixedPrecisionPolicy all-gathers in bf16: the gathered layers cost what pure bf16's do, no autocast copy
    sh = dict(method="lora", gpus=8)  # backward-start peak: the gathered layers are live
    gathered_pure = est(**sh).weights - L8.total_params * 2 / 8 / GIB
    gathered_mixed = est(**sh, precision="bf16-mixed").weights - L8.total_params * 4 / 8 / GIB
    assert gathered_mixed == pytest.approx(gathered_pure, rel=0.01)


# ---------------------------------------------------------------- --lora-experts


def test_lora_on_experts_adds_a_b_per_expert_and_their_activations():
    on, off = (Setup(arch=MIX, rank=16, batch_size=2, seq_len=1024, lora_experts=e) for e in (True, False))
    from advisor.memory.state import adapter_params

    per_expert = 16 * ((4096 + 14336) * 2 + (14336 + 4096))  # gate, up: d→ff; down: ff→d
    assert adapter_params(on) - adapter_params(off) == MIX.moe_layers * MIX.experts * per_expert
    assert adapter_params(off) == MIX.layers * 16 * (2 * (4096 + 4096) + 2 * (4096 + 1024))  # attention only
    assert layer_activation_bytes(on) > layer_activation_bytes(off)
    assert estimate(on).adapter > estimate(off).adapter


# ---------------------------------------------------------------- --float8


def test_float8_halves_the_gathered_layers_under_fsdp_and_only_adds_casts_on_one_gpu():
    sh = dict(method="lora", gpus=8)  # backward-start peak: the gathered layers are live
    bf16, fp8 = est(**sh), est(**sh, float8=True)
    layer = L8.layer_linear_params * 2 / GIB
    assert bf16.weights - fp8.weights == pytest.approx(2 * layer / 2, rel=0.01)  # two gathered layers, 2 B → 1 B
    one, one8 = est(method="lora"), est(method="lora", float8=True)
    assert one8.activations >= one.activations and one8.peak_allocated_gb - one.peak_allocated_gb < 0.5


@pytest.mark.parametrize("args,flag", [
    (("--loss", "chunky"), "--loss"), (("--checkpointing", "some"), "--checkpointing"),
    (("--offload", "optimizer+gpu"), "--offload"), (("--method", "qlora", "--float8"), "--float8"),
    (("--precision", "fp8"), "--precision"),
])  # fmt: skip
def test_bad_stack_values_are_one_line_exit_2(run_cli, args, flag):
    code, out, err = run_cli("estimate", "--model", "Llama-3.1-8B", *args)
    assert (code, out) == (2, "") and err.startswith(f"advisor: error: {flag}") and err.count("\n") == 1


def test_recommend_takes_the_stack_options(run_cli):
    base = ("recommend", "--gpu", "24GB", "--examples", "3000", "--model", "Llama-3.1-8B", "--seq-len", "4096", "--json")
    _, out, _ = run_cli(*base)
    _, out_fused, _ = run_cli(*base, "--loss", "fused", "--checkpointing", "full")
    a, b = json.loads(out), json.loads(out_fused)
    assert b["memory"]["peak_allocated_gb"] < a["memory"]["peak_allocated_gb"] or b["micro_batch"] > a["micro_batch"]


def test_estimator_vs_simulation_grid_covers_what_the_issue_asks():
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "benchmarks" / "estimator_vs_simulation.py"
    spec = importlib.util.spec_from_file_location("evs", path)
    evs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(evs)  # imports no torch until a simulation runs
    grid = evs.grid()
    assert len(grid) >= 300 and len({c["model"] for c in grid}) >= 10
    assert {c["method"] for c in grid} == {"full", "lora", "qlora", "dora"}
    assert {c["checkpointing"] for c in grid} == {"none", "full", "selective"}
    assert min(c["batch"] for c in grid) == 1 and max(c["batch"] for c in grid) == 16
    assert min(c["seq"] for c in grid) == 512 and max(c["seq"] for c in grid) == 32768
    assert {c["gpus"] for c in grid} >= {1, 2, 4, 8} and len({evs.key(c) for c in grid}) == len(grid)
