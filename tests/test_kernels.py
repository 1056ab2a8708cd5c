"""The fused kernels (harness/kernels.py, ``train.kernels``, ``--kernels``): transformers' maths, less memory.

Each kernel must give the same loss and gradients as the code it replaces, save what the Triton kernel
saves (the simulated step with kernels equals the real one; both memory paths count the same bytes),
and touch only the model it was applied to.
"""

from __future__ import annotations

import copy

import pytest

torch = pytest.importorskip("torch")

LLAMA = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
             vocab_size=128, max_position_embeddings=64)  # fmt: skip


def _llama(**over):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(**{**LLAMA, **over})).float()


def _loss_and_grads(model, ids):
    for p in model.parameters():
        p.grad = None
    loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def _same(a: dict, b: dict, tol: float = 1e-5) -> None:
    assert a.keys() == b.keys()
    for n in a:
        scale = a[n].abs().max().item() + 1e-12
        assert (a[n] - b[n]).abs().max().item() / scale < tol, n


@pytest.mark.parametrize("ckpt", [False, True])
def test_liger_kernels_give_transformers_loss_and_gradients(ckpt):
    from harness.kernels import apply

    ref = _llama()
    fused = copy.deepcopy(ref)
    assert apply(fused, "liger") == {"rms_norm": 5, "swiglu": 2, "rope": 2}  # 2 norms a layer + the final one
    if ckpt:
        for m in (ref, fused):
            m.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
            m.train()
    ids = torch.randint(0, LLAMA["vocab_size"], (2, 24))
    (l1, g1), (l2, g2) = _loss_and_grads(ref, ids), _loss_and_grads(fused, ids)
    assert l1 == pytest.approx(l2, rel=1e-6)
    _same(g1, g2)


def test_gemma_norms_scale_by_one_plus_the_weight():
    from transformers import Gemma2Config, Gemma2ForCausalLM

    from harness.kernels import apply

    torch.manual_seed(0)
    ref = Gemma2ForCausalLM(Gemma2Config(**LLAMA, head_dim=16)).float()
    for p in ref.parameters():  # Gemma's norm weights start at 0: move them off it, so (1 + w) is tested
        if p.dim() == 1:
            p.data.normal_(0, 0.5)
    fused = copy.deepcopy(ref)
    done = apply(fused, "rms_norm+swiglu")
    assert done == {"rms_norm": 2 * 4 + 1, "swiglu": 0}  # Gemma 2: four norms a layer; a GELU MLP is not SwiGLU
    ids = torch.randint(0, LLAMA["vocab_size"], (2, 16))
    (l1, g1), (l2, g2) = _loss_and_grads(ref, ids), _loss_and_grads(fused, ids)
    assert l1 == pytest.approx(l2, rel=1e-6)
    _same(g1, g2)


def test_fused_lora_is_peft_adapter_without_dropout():
    from peft import LoraConfig, get_peft_model

    from harness.kernels import apply

    base = _llama()
    torch.manual_seed(1)
    ref = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules="all-linear"))
    for n, p in ref.named_parameters():
        if "lora_B" in n:
            p.data.normal_(0, 0.1)  # B starts at 0: give the adapters an output and an input gradient
    fused = copy.deepcopy(ref)
    assert apply(fused, "lora")["lora"] == 7 * LLAMA["num_hidden_layers"]
    ids = torch.randint(0, LLAMA["vocab_size"], (2, 16))
    (l1, g1), (l2, g2) = _loss_and_grads(ref, ids), _loss_and_grads(fused, ids)
    assert l1 == pytest.approx(l2, rel=1e-6)
    _same(g1, g2)


def test_fused_lora_dropout_is_the_masked_adapter_and_keeps_no_mask():
    from harness.kernels import functions

    LoRA = functions().lora
    x = torch.randn(3, 5, 16, requires_grad=True)
    A, B = torch.randn(4, 16, requires_grad=True), torch.randn(8, 4, requires_grad=True)
    torch.manual_seed(7)
    out = LoRA.apply(x, A, B, 2.0, 0.25)
    assert len(out.grad_fn.saved_tensors) == 3  # the dropped-out input and the two adapters: no mask
    out.sum().backward()
    got = (x.grad.clone(), A.grad.clone(), B.grad.clone())
    for t in (x, A, B):
        t.grad = None
    torch.manual_seed(7)
    keep = torch.empty_like(x).bernoulli_(0.75)  # the same draw
    ref = (x * keep / 0.75) @ A.t() @ B.t() * 2.0
    ref.sum().backward()
    assert torch.allclose(out, ref, atol=1e-5)
    for a, b in zip(got, (x.grad, A.grad, B.grad)):
        assert torch.allclose(a, b, atol=1e-4)


def test_rope_is_fused_only_in_the_model_it_was_applied_to(monkeypatch):
    from harness import kernels

    patched, plain = _llama(), _llama()
    kernels.apply(patched, "rope")
    calls = []
    rope = kernels.functions().rope
    monkeypatch.setattr(rope, "apply", lambda *a, _f=rope.apply: calls.append(1) or _f(*a))
    ids = torch.randint(0, LLAMA["vocab_size"], (1, 8))
    before = plain(input_ids=ids).logits
    assert not calls  # another Llama in the same process runs transformers' RoPE
    after = patched(input_ids=ids).logits
    assert len(calls) == 2 * LLAMA["num_hidden_layers"]  # q and k, each layer
    assert torch.allclose(before, after, atol=1e-5)  # same weights (same seed), same maths


def test_an_unknown_kernel_is_named_with_a_suggestion():
    from advisor.facts import parse_kernels

    assert parse_kernels("liger") == ("rms_norm", "swiglu", "rope")
    assert parse_kernels(["rope", "rms_norm"]) == ("rms_norm", "rope")
    assert parse_kernels("none") == () and parse_kernels(None) == ()
    with pytest.raises(ValueError, match="unknown kernel 'ligr'.*did you mean 'liger'"):
        parse_kernels("ligr")


# ---------------------------------------------------------------- memory: simulated, real and analytic

TINY = dict(model_type="llama", hidden_size=64, intermediate_size=256, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=64)  # fmt: skip


def _step(method: str, kernels: tuple, real: bool = False, **over):
    from advisor.simulate.step import StepSpec, run

    s = StepSpec(method=method, rank=4, batch_size=2, seq_len=64, lora_dropout=over.pop("lora_dropout", 0.1), kernels=kernels, **over)
    return run(TINY, s, real=real)


@pytest.mark.parametrize("method, kernels", [("full", ("rms_norm", "swiglu", "rope")), ("lora", ("rms_norm", "swiglu", "rope", "lora"))])
def test_simulated_step_with_kernels_equals_the_real_step(method, kernels):
    fake, real = _step(method, kernels), _step(method, kernels, real=True)
    assert fake["peak"] == real["peak"] and fake["phases"] == real["phases"]
    plain = _step(method, ())
    assert fake["peak"]["activations"] < plain["peak"]["activations"]  # a kernel that saved as much would fail here


def test_both_memory_paths_count_the_same_saving_per_kernel():
    """The analytic model's mechanism for each kernel against the simulated step, at the moment everything
    forward saved is held (the head's pre-hook: the simulated "loss" phase): per token, each kernel's saving
    in the analytic per-layer, head and first-layer terms agrees with the simulated one within 5%."""
    from dataclasses import replace

    from advisor.inputs.arch import Arch
    from advisor.memory import activations as act
    from advisor.memory.setup import Setup
    from advisor.simulate import step_spec
    from advisor.simulate.step import run

    cfg = {**TINY, "num_hidden_layers": 2}
    base = Setup(arch=Arch.from_hf(cfg, where="test"), method="lora", rank=4, batch_size=4, seq_len=512, lora_dropout=0.1)
    tokens = base.batch_size * base.seq_len

    def per_token(kernels):
        s = replace(base, kernels=kernels)
        sim = run(cfg, step_spec(s))["phases"]["loss"]["activations"] / tokens
        ana = cfg["num_hidden_layers"] * act.layer_activation_bytes(s) + act.head_activation_bytes(s) - act.first_layer_savings(s)
        return sim, ana

    sim0, ana0 = per_token(())
    for k in ("rms_norm", "swiglu", "lora"):
        sim1, ana1 = per_token((k,))
        assert sim0 - sim1 > 0.02 * sim0, k  # each one saves something here
        assert ana0 - ana1 == pytest.approx(sim0 - sim1, rel=0.05), k


def test_rope_rotates_in_place_and_inverts_in_backward():
    from harness.kernels import functions

    rope = functions().rope
    q0 = torch.randn(2, 4, 8, 16)
    q = q0.clone().requires_grad_(True)
    t = q * 1.0  # a non-leaf, as q_proj's output is
    ang = torch.randn(2, 8, 8)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    out = rope.apply(t, cos, sin)
    assert out.data_ptr() == t.data_ptr()  # no q-sized copy: the kernel writes over its input
    x1, x2 = q0[..., :8], q0[..., 8:]
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    ref = q0 * c + torch.cat([-x2, x1], -1) * s  # transformers' q * cos + rotate_half(q) * sin
    assert torch.allclose(out, ref, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    qr = q0.clone().requires_grad_(True)
    (qr * c + torch.cat([-qr[..., 8:], qr[..., :8]], -1) * s).backward(g)
    assert torch.allclose(q.grad, qr.grad, atol=1e-5)


def test_phi3s_fused_gate_up_and_partial_rotary_keep_their_maths():
    from transformers import Phi3Config, Phi3ForCausalLM

    from harness.kernels import apply

    torch.manual_seed(0)
    cfg = Phi3Config(**LLAMA, partial_rotary_factor=0.5, pad_token_id=0, eos_token_id=1, bos_token_id=1)
    ref = Phi3ForCausalLM(cfg).float()
    fused = copy.deepcopy(ref)
    assert apply(fused, "liger") == {"rms_norm": 5, "swiglu": 2, "rope": 2}  # gate_up_proj's halves are views: no copy
    ids = torch.randint(2, LLAMA["vocab_size"], (2, 16))
    (l1, g1), (l2, g2) = _loss_and_grads(ref, ids), _loss_and_grads(fused, ids)
    assert l1 == pytest.approx(l2, rel=1e-6)
    _same(g1, g2)


def test_a_harness_run_with_kernels_patches_them_and_learns(run_tiny):
    rec = run_tiny("train.kernels=[unsloth]")
    assert rec["status"] == "ok", rec.get("error")
    assert list(rec["config"]["train"]["kernels"]) == ["rms_norm", "swiglu", "rope", "lora"]
    patched = rec["metrics"]["kernels_patched"]
    assert min(patched.values()) > 0  # the tiny Llama has every module each kernel replaces
    assert rec["metrics"]["train_loss_last"] < rec["metrics"]["train_loss_first"]
