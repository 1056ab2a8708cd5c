"""advisor/memory/activations.py, term by term, against what autograd really saves.

The reference is torch itself: ``saved_tensors_hooks`` lists every tensor autograd keeps for backward
while a tiny module (transformers' own Llama RMSNorm/MLP/attention where it has one) runs forward on
CPU; each storage is counted once, parameters not at all. The analytic model is per token, so each
test compares a difference the model isolates (a wider MLP, a longer sequence, a second adapted
module, one switch) with the same difference measured. Then the orderings a realistic bug breaks.
Written against the survivors of `scripts/mutation.sh advisor_activations` (docs/mutation.md)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from advisor.inputs.arch import PLAIN, Arch
from advisor.memory import activations as act
from advisor.memory.setup import Setup

torch = pytest.importorskip("torch")
F = torch.nn.functional
BF16 = torch.bfloat16
T = 16  # tokens in the reference runs
TINY = Arch(layers=2, hidden=64, intermediate=128, heads=4, kv_heads=4, vocab=256, tied=False)
MOE = replace(TINY, experts=4, experts_per_tok=2, expert_intermediate=32, shared_intermediate=64, moe_layers=2)
MLA = replace(TINY, mla=(0, 32, 16, 8, 16))


def saved_bytes(fn, *params) -> int:
    """Bytes autograd saves for backward while ``fn`` runs: each storage once, parameters excluded."""
    skip = {p.untyped_storage().data_ptr() for m in params for p in m.parameters()}
    seen: dict[int, int] = {}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if ptr not in skip:
            seen[ptr] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(seen.values())


def x(width: int, dtype=BF16):
    return torch.randn(T, width, dtype=dtype, requires_grad=True)


def frozen(module):
    return module.requires_grad_(False)


def layer(arch=TINY, **kw) -> float:
    return act.layer_activation_bytes(Setup(arch=arch, **{"targets": "q_proj", "lora_dropout": 0.0, **kw}))


# ---------------------------------------------------------------- one decoder layer's saved tensors
@pytest.mark.parametrize("mlp", ["gated", PLAIN])
def test_mlp_saved_tensors_per_ff_unit_match_autograd(mlp):
    """Frozen MLP (LoRA on attention only): gated saves gate's output, act's output and up's (3 × ff);
    a plain MLP (torch's GELU) fc1's output only (1 × ff). Slope in ff: measured vs modelled."""
    from transformers import LlamaConfig
    from transformers.models.llama.modeling_llama import LlamaMLP

    def measured(ff):
        if mlp == "gated":
            m = frozen(LlamaMLP(LlamaConfig(hidden_size=64, intermediate_size=ff)).to(BF16))
            run = lambda: m(x(64))  # noqa: E731
        else:
            fc1, fc2 = frozen(torch.nn.Linear(64, ff).to(BF16)), frozen(torch.nn.Linear(ff, 64).to(BF16))
            m = torch.nn.ModuleList([fc1, fc2])
            run = lambda: fc2(F.gelu(fc1(x(64))))  # noqa: E731
        return saved_bytes(run, m) / T

    arch = replace(TINY, mlp=mlp)
    modelled = layer(replace(arch, intermediate=256)) - layer(replace(arch, intermediate=128))
    assert modelled == measured(256) - measured(128) == {"gated": 3, PLAIN: 1}[mlp] * 2 * 128


def test_eager_attention_saves_fp32_softmax_and_its_bf16_copy_per_key():
    """transformers' eager attention: per token and head, the fp32 softmax and its bf16 cast grow with S."""
    from transformers.models.llama.modeling_llama import eager_attention_forward

    class Mod(torch.nn.Module):
        num_key_value_groups, training = 1, True

    def measured(s):
        q, k, v = (torch.randn(1, 4, s, 16, dtype=BF16, requires_grad=True) for _ in range(3))
        mask = torch.full((s, s), float("-inf")).triu(1)[None, None].to(BF16)
        return saved_bytes(lambda: eager_attention_forward(Mod(), q, k, v, mask, scaling=0.25, dropout=0.0)) / s

    per_key = (measured(32) - measured(16)) / 16  # the S × S part, per token per key
    modelled = (layer(attention="eager", seq_len=32) - layer(attention="eager", seq_len=16)) / 16
    assert modelled == per_key == TINY.heads * (4 + 2)
    assert layer(attention="sdpa", seq_len=32) == layer(attention="sdpa", seq_len=16)  # fused SDPA keeps no S × S


def test_sdpa_saves_v_at_its_own_head_dim_under_mla():
    """Multi-head latent attention: v is narrower than q/k; SDPA saves v and its output at v's width."""

    def measured(vd):
        q, k = (torch.randn(1, 4, T, 24, dtype=BF16, requires_grad=True) for _ in range(2))
        v = torch.randn(1, 4, T, vd, dtype=BF16, requires_grad=True)
        return saved_bytes(lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)) / T

    wide = replace(MLA, mla=(0, 32, 16, 8, 32))
    # the output is saved twice in the model's count (SDPA's output and o_proj's input) only when o_proj trains
    assert layer(wide, method="lora") - layer(MLA, method="lora") == measured(32) - measured(16) == 4 * 16 * 2 * 2


def test_an_adapter_in_another_dtype_saves_a_fresh_cast_of_its_input_per_module():
    """peft casts a module's input to the adapter dtype: a second adapted module reading the same
    tensor saves a second copy (fp32 adapters, no autocast); bf16 adapters share the layer's input."""

    def measured(n_modules):
        a_s = [torch.nn.Linear(64, 16, bias=False) for _ in range(n_modules)]
        b_s = [torch.nn.Linear(16, 64, bias=False) for _ in range(n_modules)]
        h = x(64)
        return saved_bytes(lambda: sum(b(a(h.float())) for a, b in zip(a_s, b_s)), *a_s, *b_s) / T

    tt = {"stack": "torchtune", "adapter_dtype": "fp32", "rank": 16}
    second = layer(targets="q_proj+k_proj", **tt) - layer(**tt)
    assert second == measured(2) - measured(1) == 4 * 64 + 4 * 16
    shared = {**tt, "adapter_dtype": "bf16"}
    assert layer(targets="q_proj+k_proj", **shared) - layer(**shared) == 2 * 16  # only lora_A's r-wide output


def test_cpu_dropout_keeps_a_float_mask_per_adapted_input():
    """torch's CPU dropout multiplies by a float noise tensor it saves (CUDA's fused kernel: a bool mask)."""
    h = torch.randn(T, 64, requires_grad=True)  # the fp32 copy peft hands to lora_dropout
    cpu_mask = saved_bytes(lambda: F.dropout(h, 0.05, training=True)) / T / 64
    assert cpu_mask == 4
    s = {"lora_dropout": 0.05, "targets": "all-linear"}
    inputs = sum(i for i, _ in TINY.linears().values())  # every adapted module drops out its own input
    assert layer(device="cpu", **s) - layer(device="cuda", **s) == (cpu_mask - 1) * inputs


def test_head_saves_the_normed_copy_and_the_lm_heads_input_only_when_it_trains():
    from transformers.models.llama.modeling_llama import LlamaRMSNorm

    def measured(trains):
        norm, head = LlamaRMSNorm(64).to(BF16), torch.nn.Linear(64, 256, bias=False).to(BF16)
        norm.requires_grad_(trains), head.requires_grad_(trains)
        return saved_bytes(lambda: head(norm(x(64))), norm, head) / T

    full, lora = act.head_activation_bytes(Setup(arch=TINY, method="full")), act.head_activation_bytes(Setup(arch=TINY))
    assert full - lora == measured(True) - measured(False) == 2 * 2 * 64
    assert act.head_activation_bytes(Setup(arch=TINY, targets="all-linear+lm_head")) == full


# ---------------------------------------------------------------- logits
def test_logit_softcapping_saves_its_tanh_output_per_logit():
    logits = torch.randn(T, 256, dtype=BF16, requires_grad=True)
    per_logit = saved_bytes(lambda: torch.tanh(logits / 30) * 30) / T / 256
    capped = replace(TINY, logit_softcap=True)
    for loss in ("full", "lowp"):
        diff = act.logits_bytes_per_element(Setup(arch=capped, loss=loss)) - act.logits_bytes_per_element(Setup(arch=TINY, loss=loss))
        assert diff == per_logit == 2


def test_the_loss_kinds_order_as_their_mechanisms_do():
    """bf16 cross-entropy keeps at least its saved log-softmax and less than the fp32 upcast; a compiled
    chunked loss holds one chunk's share of the fp32 work the standard loss holds whole; fused least."""
    logits = torch.randn(T, 256, dtype=BF16, requires_grad=True)
    target = torch.randint(0, 256, (T,))
    lowp_saved = saved_bytes(lambda: F.cross_entropy(logits, target)) / T / 256
    per = {k: act.logits_bytes_per_element(Setup(arch=TINY, loss=k)) for k in ("fused", "chunked", "lowp", "full")}
    assert lowp_saved <= per["lowp"] < per["full"]
    assert per["fused"] < per["chunked"] < per["full"]
    compiled = act.logits_bytes_per_element(Setup(arch=TINY, loss="chunked", compile=True))
    assert compiled - 2 == pytest.approx(per["full"] / act.CHUNKED_CE_CHUNKS)
    tokens = 512
    assert act.loss_bytes(Setup(arch=TINY, loss="fused"), tokens) < act.loss_bytes(Setup(arch=TINY), tokens)
    assert act.loss_bytes(Setup(arch=replace(TINY, vocab=512)), tokens) == 2 * act.loss_bytes(Setup(arch=TINY), tokens)


def test_low_precision_cross_entropy_peaks_at_three_logit_sized_tensors():
    """torch's MemTracker on real bf16 logits: log-softmax's backward holds its saved output and the incoming
    and outgoing gradients at once, 3 × 2 B a logit (the fp32 loss holds the same three in fp32)."""
    from torch.distributed._tools.mem_tracker import MemTracker

    logits = torch.randn(T, 256, dtype=BF16, requires_grad=True)
    target = torch.randint(0, 256, (T,))
    tracker = MemTracker()
    with tracker:
        head_output = logits * 1  # what the LM head returns: freed once the loss has it
        loss = F.cross_entropy(head_output, target)
        del head_output
        loss.backward()
    peak = tracker.get_tracker_snapshot("peak")[logits.device]["Total"]
    setup = Setup(arch=TINY, loss="lowp", keep_logits=False)
    assert not setup.holds_logits
    assert peak // (T * 256) == act.logits_bytes_per_element(setup) == 6


@pytest.mark.parametrize("tokens", [1, 7, 8, 9, 64, 4096])
def test_fused_chunk_is_ligers_next_power_of_two(tokens):
    arch = replace(TINY, vocab=256, hidden=64)  # Liger: inc_factor = ceil(V / d) = 4
    n = math.ceil(tokens / 4)
    assert act.fused_chunk_tokens(Setup(arch=arch, loss="fused"), tokens) == min(tokens, 2 ** math.ceil(math.log2(n)))


# ---------------------------------------------------------------- what the checks distinguish
def test_without_dropout_the_first_layer_saves_no_masks_whatever_is_targeted():
    base = {"arch": TINY, "lora_dropout": 0.0}
    assert act.first_layer_savings(Setup(targets="q_proj", **base)) == act.first_layer_savings(Setup(targets="all-linear", **base))
    drop = {"arch": TINY, "lora_dropout": 0.1}
    assert act.first_layer_savings(Setup(targets="all-linear", **drop)) > act.first_layer_savings(Setup(targets="q_proj", **drop))


def test_dora_saves_more_than_lora_and_its_extras_grow_with_the_modules():
    for fn in (act.layer_activation_bytes, act.backward_working_bytes):
        assert fn(Setup(arch=TINY, method="dora")) > fn(Setup(arch=TINY, method="lora"))
    wide = replace(TINY, intermediate=512)
    assert act.backward_working_bytes(Setup(arch=wide, method="dora")) - act.backward_working_bytes(Setup(arch=wide)) == 2 * 4 * 512 - 2 * 2 * 512
    small = act.dora_weight_bytes(Setup(arch=MOE, method="dora"))
    assert act.dora_weight_bytes(Setup(arch=replace(MOE, shared_intermediate=128), method="dora")) > small


def test_dora_norm_working_set_is_the_eye_the_product_and_its_cast():
    """peft: lora_B(lora_A(eye(d_in))) in fp32 (lora_A saves the eye), cast to bf16: measured on q_proj."""
    a, b = torch.nn.Linear(64, 16, bias=False), torch.nn.Linear(16, 64, bias=False)
    eye = torch.eye(64)
    eye_saved = saved_bytes(lambda: b(a(eye)), a, b) - 16 * 64 * 4  # less lora_B's saved r-wide input
    product = b(a(eye))
    total = eye_saved + product.nbytes + product.to(BF16).nbytes
    s = Setup(arch=TINY, method="dora", targets="q_proj", checkpointing="full")
    assert act.dora_norm_bytes(s) == total


def test_a_family_without_sdpa_runs_eager_attention_under_the_default():
    gpt_oss_like = replace(TINY, sdpa_unsupported=True)
    assert act.eager_attention(Setup(arch=gpt_oss_like)) and not act.eager_attention(Setup(arch=gpt_oss_like, attention="flash"))
    assert layer(gpt_oss_like, seq_len=64) > layer(gpt_oss_like, seq_len=32)


def test_parallel_attention_and_mlp_save_their_shared_input_once():
    """Falcon/Phi: the MLP reads the attention's normed input; full fine-tuning saves that tensor once."""
    seq = replace(TINY, mlp=PLAIN, norms_per_layer=1)
    par = replace(seq, parallel=True)
    full = {"method": "full"}
    assert layer(seq, **full) - layer(par, **full) == 2 * 64  # the second d-wide input, bf16


def test_moe_layer_counts_routed_and_shared_experts():
    more_shared = replace(MOE, shared_intermediate=128)
    assert layer(more_shared) - layer(MOE) == 3 * 2 * 64  # the shared expert's 3 × ff, MoE on every layer
    assert layer(replace(MOE, experts_per_tok=3)) > layer(MOE)
    sel = lambda arch, **kw: act.selective_layer_bytes(Setup(arch=arch, checkpointing="selective", **kw))  # noqa: E731
    assert sel(more_shared) > sel(MOE)
    assert sel(TINY, rank=32) > sel(TINY, rank=16)
    merge = Setup(arch=MOE, lora_experts=True)
    assert act.expert_merge_bytes(merge) > 0 and act.expert_merge_bytes(replace(merge, stack="torchtune")) == 0


def test_backward_gradients_of_one_layer():
    """Gated MLP: two ff-wide gradients (act(gate)'s and up's), plain one; dk and dv at kv width under
    flash, expanded to q width under sdpa; float8 adds 1-byte casts of input and gradient."""
    bw = lambda arch, **kw: act.backward_working_bytes(Setup(arch=arch, **kw))  # noqa: E731
    wide = replace(TINY, intermediate=1024)
    for mlp, per_ff in (("gated", 2), (PLAIN, 1)):
        arch = replace(wide, mlp=mlp)
        assert bw(replace(arch, intermediate=2048)) - bw(arch) == per_ff * 2 * 1024
    attn = replace(TINY, intermediate=8, heads=8, kv_heads=2)  # attention dominates
    assert bw(attn, attention="sdpa") > bw(attn, attention="flash")
    assert bw(replace(attn, kv_heads=4), attention="flash") - bw(attn, attention="flash") == 2 * 2 * (2 * 8)
    assert bw(TINY, float8=True) - bw(TINY) == 64 + 128


def test_peft_lora_forward_holds_its_fp32_cast_and_dropout_output_at_once():
    """torch's MemTracker (the simulator's PeakTracker: frozen parameters allowed) on peft's LoRA Linear: a bf16
    input, fp32 adapters, dropout, under autocast (the
    Trainer's bf16=True). Beyond what forward leaves saved, forward's peak holds the fp32 cast of the input and
    dropout's fp32 output together: 8 B an input element (lora_forward_transient_bytes); the fused op none."""
    from peft import LoraConfig, get_peft_model

    from advisor.simulate.mem_tracking import PeakTracker

    d_in, d_out = 512, 64
    model = get_peft_model(torch.nn.Sequential(torch.nn.Linear(d_in, d_out, bias=False)).to(BF16),
                           LoraConfig(r=4, lora_dropout=0.1, target_modules=["0"]))  # fmt: skip
    for n, p in model.named_parameters():
        if "lora_" in n:
            p.data = p.data.float()  # peft's adapters in fp32, the base in bf16
    x = torch.randn(T, d_in, dtype=BF16, requires_grad=True)
    tracker = PeakTracker()
    tracker.track_external(model, x)
    with tracker, torch.autocast("cpu", dtype=BF16):
        out = model(x)
        peak = tracker.peak()["total"]
        after = tracker.get_tracker_snapshot("current")[x.device]["Total"]
    del out
    arch = replace(TINY, hidden=d_in, intermediate=d_in)  # every adapted input d_in wide
    s = Setup(arch=arch, targets="q_proj", lora_dropout=0.1, device="cpu")
    transient = act.lora_forward_transient_bytes(s)
    assert transient == 8 * d_in
    assert abs((peak - after) - transient * T) <= 0.1 * transient * T  # the output and small r-wide tensors aside
    assert act.lora_forward_transient_bytes(replace(s, kernels=("lora",))) == 0


def test_q_and_k_norms_save_their_fp32_inputs_per_layer():
    """Qwen3's attention normalizes q and k per head before RoPE; each RMSNorm saves its fp32 input, so a
    qk-norm layer saves 4 B × (q + kv widths) a token more than the same layer without (saved-tensor hooks)."""
    from transformers import Qwen3Config
    from transformers.models.qwen3.modeling_qwen3 import Qwen3RMSNorm

    cfg = Qwen3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, head_dim=16)
    q = torch.randn(1, T, 4, 16, dtype=BF16, requires_grad=True)
    k = torch.randn(1, T, 2, 16, dtype=BF16, requires_grad=True)
    qn, kn = Qwen3RMSNorm(16, eps=cfg.rms_norm_eps).to(BF16), Qwen3RMSNorm(16, eps=cfg.rms_norm_eps).to(BF16)
    for m in (qn, kn):
        m.weight.requires_grad_(False)  # LoRA: the norms are frozen
    measured = saved_bytes(lambda: (qn(q * 1), kn(k * 1)), qn, kn) // T
    plain = Arch.from_hf({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                          "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "head_dim": 16}, where="t")
    qk = Arch.from_hf({"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                       "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "head_dim": 16}, where="t")  # fmt: skip
    assert qk.qk_norm and not plain.qk_norm
    extra = act.layer_activation_bytes(Setup(arch=qk)) - act.layer_activation_bytes(Setup(arch=plain))
    assert extra == 4 * (4 * 16 + 2 * 16)
    assert abs(measured - extra) <= 4 * (4 + 2)  # + the fp32 inverse RMS per head row
