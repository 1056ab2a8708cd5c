"""The stack habits the simulated step runs (advisor/simulate/habits.py): each equals the same step on real
tensors, and each changes the bytes its mechanism says, so dropping one from the step fails here."""

from __future__ import annotations

from functools import lru_cache

import pytest

# no dropout, so every habit's difference is its own mechanism's bytes; untied head
TINY = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=256)  # fmt: skip
B, S, V, D = 2, 32, 256, 64


@lru_cache(maxsize=None)
def _run(method: str = "full", real: bool = False, **habits):
    from advisor.simulate.step import StepSpec, run

    return run(TINY, StepSpec(method=method, rank=4, batch_size=B, seq_len=S, lora_dropout=0.0, **habits), real=real)


@pytest.mark.parametrize("method, habits", [
    ("lora", dict(adapter_dtype="bf16", autocast=False, loss="lowp", hold_logits=True, attention="eager")),
    ("full", dict(optimizer_impl="foreach", loss="torchtune")),
    ("full", dict(loss="liger")),
    ("lora", dict(attention="flash")),
    ("qlora", dict(double_quant=False)),
])  # fmt: skip
def test_stack_habits_simulated_equal_the_real_step(method, habits):
    fake, real = _run(method, **habits), _run(method, real=True, **habits)
    assert fake["peak"] == real["peak"] and fake["phases"] == real["phases"]


def test_bf16_adapters_halve_the_adapters_and_their_states():
    fp32, bf16 = _run("lora"), _run("lora", adapter_dtype="bf16")
    assert bf16["trainable_params"] == fp32["trainable_params"]
    assert 2 * bf16["trainable_bytes"] == fp32["trainable_bytes"] > 0
    opt = "optimizer step"
    steps = 4 * 2 * 7 * TINY["num_hidden_layers"]  # AdamW's fp32 step count per tensor: lora_A and lora_B of 7 linears a layer
    assert 2 * (bf16["phases"][opt]["optimizer_states"] - steps) == fp32["phases"][opt]["optimizer_states"] - steps


def test_qlora_without_kbit_preparation_keeps_embeddings_head_and_norms_in_bf16():
    prepared, plain = _run("qlora"), _run("qlora", kbit_prep=False)
    norms = (2 * TINY["num_hidden_layers"] + 1) * D
    upcast = 2 * V * D + norms  # embeddings + head + norms: 4 B each under prepare_model_for_kbit_training, 2 B without
    assert prepared["phases"]["forward"]["parameters"] - plain["phases"]["forward"]["parameters"] == 2 * upcast


def test_qlora_without_double_quantization_keeps_an_fp32_absmax_per_64_weights():
    """litgpt's bnb.nf4 (the rows' double_quant=no): one fp32 absmax per 64-weight block, where the harness's
    double quantization keeps a uint8 one, plus an fp32 absmax per 256 blocks and the 256-entry code table."""
    from torch import nn

    dq, plain = _run("qlora"), _run("qlora", double_quant=False)
    blocks = [-(-m.weight.numel() // 64) for m in _model().modules() if isinstance(m, nn.Linear) and m.out_features != V]
    nested = sum(4 * -(-b // 256) + 4 * 256 + 4 for b in blocks)  # state2 absmax, its code table, the offset
    assert plain["quant_bytes"] - dq["quant_bytes"] == sum(3 * b for b in blocks) - nested
    assert plain["peak"]["total"] - dq["peak"]["total"] == plain["quant_bytes"] - dq["quant_bytes"]


def test_cuda_foreach_adamw_holds_a_temporary_over_every_parameter_and_fused_none():
    from torch import nn

    sizes = [p.numel() for p in nn.Module.parameters(_model())]
    params = 2 * sum(sizes)  # bf16
    default, foreach, fused = (_run("full", optimizer_impl=i)["phases"]["optimizer step"]["total"] for i in ("default", "foreach", "fused"))
    assert foreach - default >= params / 2  # sqrt(exp_avg_sq) for every parameter at once, not one tensor's
    assert fused < default  # no per-tensor temporary either


def _model():
    import torch

    from advisor.simulate import build

    return build.meta_model(TINY, torch.bfloat16)


def test_low_precision_cross_entropy_skips_the_fp32_logits():
    standard, lowp = _run("full")["phases"]["loss"]["total"], _run("full", loss="lowp")["phases"]["loss"]["total"]
    assert standard - lowp >= 4 * B * S * V  # the fp32 upcast of the logits


def test_a_loop_holding_the_logits_keeps_them_through_backward():
    base, held = _run("full")["phases"]["backward"]["total"], _run("full", hold_logits=True)["phases"]["backward"]["total"]
    assert held - base == 2 * B * S * V  # the bf16 logits


def test_torchtunes_chunked_output_loss_upcasts_one_chunk_at_a_time():
    """Standard: bf16 logits + their fp32 copy + the saved fp32 log-softmax at once (10 B a logit); torchtune's:
    the bf16 logits and every chunk's saved fp32 log-softmax, but only one chunk's fp32 copy in flight."""
    phase = lambda **k: _run("full", **k)["phases"]["loss"]["total"]  # noqa: E731
    assert phase() - phase(loss="torchtune") >= 2.5 * B * S * V


def test_fused_linear_cross_entropy_is_the_cross_entropy_and_never_holds_the_logits():
    """--loss fused runs Liger's algorithm: the same loss and gradients as the standard cross-entropy, and the
    gradient of the head's input, not B × S × V logits, is what lives on from the loss to backward."""
    import torch
    import torch.nn.functional as F

    from advisor.simulate.habits import fused_linear_ce

    torch.manual_seed(0)
    h = torch.randn(37, 16, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 16, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (37,))
    y[3] = -100
    fused = fused_linear_ce().apply(h, w, y, 8, (y != -100).sum())
    (2 * fused).backward()
    grads = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    (2 * F.cross_entropy(h @ w.t(), y, ignore_index=-100)).backward()
    assert torch.allclose(fused.double(), F.cross_entropy(h @ w.t(), y, ignore_index=-100), rtol=1e-6)
    assert torch.allclose(grads[0], h.grad) and torch.allclose(grads[1], w.grad)
    standard, liger = _run("full")["phases"], _run("full", loss="liger")["phases"]
    # standard: at least the fp32 log-softmax and one fp32 gradient (8 B a logit) at backward; Liger instead holds
    # the input's gradient (B·S·D) and, the head training, the head's (V·D), both bf16, from its forward
    assert standard["backward"]["total"] - liger["backward"]["total"] >= 8 * B * S * V - 2 * (V * D + B * S * D)


def test_flash_attention_keeps_k_and_v_unexpanded_and_builds_no_mask():
    """transformers' SDPA path repeats a GQA model's k and v to every query head and builds the padded batch's
    B × 1 × S × S mask; flash-attention-2 saves them as they are and never builds a mask."""
    heads, kv = TINY["num_attention_heads"], TINY["num_key_value_heads"]
    expanded = 2 * B * S * (heads - kv) * (D // heads) * 2  # k and v, bf16, one layer
    sdpa, flash = (_run("lora", attention=a)["phases"]["loss"]["activations"] for a in ("sdpa", "flash"))
    assert sdpa - flash >= expanded + B * S * S


def test_a_setups_stack_reaches_the_step():
    from dataclasses import replace

    from advisor.inputs.catalog import resolve_model
    from advisor.memory.setup import Setup
    from advisor.simulate import step_spec

    hf = Setup(arch=resolve_model("Llama-3.1-8B").arch, method="qlora", rank=8, batch_size=2, seq_len=2048)
    s = step_spec(hf)
    assert (s.adapter_dtype, s.kbit_prep, s.autocast, s.loss, s.hold_logits, s.optimizer_impl) == ("auto", True, True, "standard", False, "foreach")
    assert (s.fused_activations, s.attention, s.lora_experts) == (False, "sdpa", False)
    tt = step_spec(replace(hf, stack="torchtune", fused_optimizer=True))
    assert (tt.adapter_dtype, tt.kbit_prep, tt.autocast, tt.loss, tt.optimizer_impl) == ("bf16", False, False, "torchtune", "fused")
    assert tt.fused_activations  # torchtune's models call torch's fused GELU
    assert step_spec(replace(hf, attention="eager", lora_experts=True)).attention == "eager"
    assert step_spec(replace(hf, attention="flash")).attention == "flash"
    assert step_spec(replace(hf, lora_experts=True)).lora_experts
    lit = step_spec(replace(hf, stack="litgpt", method="lora"))
    assert (lit.adapter_dtype, lit.autocast, lit.hold_logits) == ("bf16", False, True)
    assert not step_spec(replace(hf, precision="bf16-true")).autocast  # bf16 weights, no Trainer bf16 flag
    assert step_spec(replace(hf, device="cpu")).optimizer_impl == "default"  # a CPU run steps tensor by tensor
    assert step_spec(replace(hf, loss="fused")).loss == "liger"  # --loss fused: Liger's algorithm
    assert step_spec(replace(hf, loss="fused", loss_chunk_tokens=1024)).loss == "chunked"  # the harness's own records
    assert not step_spec(replace(hf, prepare_kbit=False)).kbit_prep  # --no-kbit-prep


def test_what_the_step_cannot_run_is_added_by_the_analytic_mechanism_and_said():
    from dataclasses import replace

    from advisor.inputs.catalog import GIB, resolve_model
    from advisor.memory.setup import Setup
    from advisor.simulate.habits import add_not_run, not_run

    s = Setup(arch=resolve_model("Llama-3.1-8B").arch, method="qlora", rank=8, batch_size=2, seq_len=2048, stack="litgpt")
    [(gb, why, phases, kind)] = not_run(s)
    assert gb > 0 and "bitsandbytes" in why and phases == ("loss", "backward") and kind == "activations"
    assert not_run(replace(s, bnb_saves_input=False)) == []
    result = {"phases": {"forward": {"total": 10, "activations": 1}, "backward": {"total": 20, "activations": 5}}, "peak": None}
    out = add_not_run(result, s)
    assert out["phases"]["backward"]["total"] == 20 + int(gb * GIB) and out["peak"] is out["phases"]["backward"]
    assert out["phases"]["forward"] == result["phases"]["forward"] and why in out["notes"]


def test_offloaded_weights_and_states_leave_every_simulated_phase():
    """--offload optimizer|params is not run on fake tensors: the analytic model's host bytes come off every phase,
    said in the notes; activation offload is simulated, so it adds no term."""
    from dataclasses import replace

    from advisor.inputs.catalog import resolve_model
    from advisor.memory.setup import Setup
    from advisor.simulate.habits import not_run

    s = Setup(arch=resolve_model("Llama-3.1-8B").arch, method="full", batch_size=1, seq_len=1024)
    assert not_run(s) == [] and not_run(replace(s, offload="activations")) == []
    [(gb, why, phases, kind)] = not_run(replace(s, offload="optimizer+activations"))
    assert gb < -20 and "optimizer" in why and "optimizer step" in phases and kind == "optimizer_states"  # 8B × 2 bf16 states ≈ 30 GB


def test_lora_experts_or_not_on_fused_moe_experts():
    """peft's all-linear reaches transformers 5's fused experts (ParamWrapper); without --lora-experts the
    simulated LoRA adapts the Linear layers only (attention here), as the analytic path counts it."""
    from advisor.simulate.step import StepSpec, run

    moe = dict(model_type="mixtral", hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
               num_key_value_heads=2, vocab_size=64, num_local_experts=4, num_experts_per_tok=2)  # fmt: skip
    s = dict(method="lora", rank=4, batch_size=1, seq_len=8, lora_dropout=0.0)
    experts, attention = (run(moe, StepSpec(**s, lora_experts=e))["trainable_params"] for e in (True, False))
    assert attention == 2 * 4 * (64 + 64) + 2 * 4 * (64 + 32)  # q, o: 64 → 64; k, v: 64 → 32 (2 KV heads)
    assert experts > attention
