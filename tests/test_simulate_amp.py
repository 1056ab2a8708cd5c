"""The GPU's autocast op lists on the simulated step's CPU tensors (advisor/simulate/amp.py): CUDA runs
layer_norm, pow, exp, softmax, sum, … in fp32 under autocast, the CPU in bf16; the simulated GPU step must
follow CUDA's lists, the harness's CPU records the CPU's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

# a Phi-style decoder: LayerNorm and transformers' Python-written gelu_new, both on CUDA's fp32 list
PHI = dict(model_type="phi", hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
           num_key_value_heads=4, vocab_size=256, hidden_act="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
           attention_dropout=0.0)  # fmt: skip
N, H = 2 * 16, 64


def _dtypes(device: str) -> dict:
    from advisor.simulate.amp import policy

    x = torch.randn(N, H, dtype=torch.bfloat16)
    w, b = torch.ones(H), torch.zeros(H)
    with policy(device), torch.autocast("cpu", dtype=torch.bfloat16):
        return {"layer_norm": F.layer_norm(x, (H,), w, b).dtype, "pow": torch.pow(x, 3.0).dtype, "**": (x**2).dtype,
                "exp": x.exp().dtype, "softmax": F.softmax(x, -1).dtype, "log_softmax": F.log_softmax(x, -1).dtype,
                "sum": x.sum(-1).dtype, "cumsum": x.cumsum(0).dtype, "linear": F.linear(x.float(), w[None]).dtype,
                "silu": F.silu(x).dtype}  # fmt: skip


def test_the_cuda_policy_runs_cudas_fp32_list_in_fp32_and_the_cpu_policy_does_not():
    cuda, cpu = _dtypes("cuda"), _dtypes("cpu")
    fp32 = {"layer_norm", "pow", "**", "exp", "softmax", "log_softmax", "sum", "cumsum"}
    assert {k for k, v in cuda.items() if v == torch.float32} == fp32
    assert cuda["linear"] == cuda["silu"] == torch.bfloat16  # lower precision and untouched ops are as before
    assert set(cpu.values()) == {torch.bfloat16}
    assert _dtypes("cpu") == cpu  # closing the policy restored the CPU's own lists
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.layer_norm(torch.ones(2, H, dtype=torch.bfloat16), (H,)).dtype == torch.bfloat16


def test_an_explicit_dtype_and_fp32_inputs_are_left_as_given():
    from advisor.simulate.amp import policy

    x = torch.randn(N, H, dtype=torch.bfloat16)
    with policy("cuda"), torch.autocast("cpu", dtype=torch.bfloat16):
        assert F.softmax(x, -1, dtype=torch.bfloat16).dtype == torch.bfloat16
        assert x.float().sum().dtype == torch.float32
        with torch.autocast("cpu", enabled=False):  # transformers' rotary embedding turns autocast off: no casts
            assert F.layer_norm(x, (H,)).dtype == torch.bfloat16


def _saved_bytes(device: str) -> int:
    """Bytes autograd saves for LayerNorm → Linear on a bf16 input under autocast."""
    from advisor.simulate.amp import policy

    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(N, H, dtype=torch.bfloat16, requires_grad=True)
    ln, lin = torch.nn.LayerNorm(H), torch.nn.Linear(H, H, bias=False)
    with policy(device), torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        lin(ln(x)).sum().backward()
    return sum(saved.values())


def test_layer_norm_saves_an_fp32_copy_of_its_input_on_the_gpu():
    # CUDA: layer_norm saves the fp32 cast of x (4 B an element) where the CPU saves x itself (2 B); both save
    # the bf16 input of the linear (the CPU's is layer_norm's own output, CUDA's the cast of its fp32 output)
    assert _saved_bytes("cuda") - _saved_bytes("cpu") == (4 - 2) * N * H


def test_dropout_keeps_cudas_bool_mask_not_the_cpus_float_noise():
    """CUDA's fused dropout saves a bool mask (1 B an element); CPU's dropout saves its noise in the input's dtype."""
    from advisor.simulate.amp import policy

    saved = {}

    def pack(t):
        saved[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    x = torch.randn(N, H, requires_grad=True)  # peft's fp32 LoRA input
    sizes = {}
    for device in ("cpu", "cuda"):
        saved.clear()
        with policy(device), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            torch.nn.Dropout(0.1)(x).sum().backward()
            assert F.dropout(x, 0.1, training=False) is x or not torch.is_grad_enabled()  # eval: untouched
        sizes[device] = sum(saved.values())
    assert (sizes["cpu"], sizes["cuda"]) == (4 * N * H, N * H)


def test_lora_dropout_under_checkpointing_is_cudas_in_the_forward_and_the_recompute():
    """The recomputed layer must run the same dropout as the forward did (checkpoint compares the saved tensors'
    metadata), and the simulated step equals the real one; CUDA's bool masks hold less than the CPU's noise."""
    from advisor.simulate.step import StepSpec, run

    llama = dict(model_type="llama", hidden_size=64, intermediate_size=128, num_hidden_layers=1, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=256)  # fmt: skip
    spec = dict(method="lora", rank=4, batch_size=2, seq_len=16, lora_dropout=0.1, checkpointing="full", steps=1)
    fake, real, cpu = run(llama, StepSpec(**spec)), run(llama, StepSpec(**spec), real=True), run(llama, StepSpec(**spec, amp="cpu"))
    assert fake["peak"] == real["peak"] and fake["phases"] == real["phases"]
    assert fake["phases"]["backward"]["activations"] < cpu["phases"]["backward"]["activations"]


@pytest.fixture(scope="module")
def phi_steps():
    from advisor.simulate.step import StepSpec, run

    def one(amp, real=False, checkpointing="none"):
        return run(PHI, StepSpec(method="lora", rank=4, batch_size=2, seq_len=16, lora_dropout=0.0, amp=amp,
                                 checkpointing=checkpointing), real=real)  # fmt: skip

    return {"cuda": one("cuda"), "cpu": one("cpu"), "cuda real": one("cuda", real=True),
            "cuda ckpt": one("cuda", checkpointing="full"), "cpu ckpt": one("cpu", checkpointing="full")}  # fmt: skip


def test_the_simulated_gpu_step_follows_cudas_lists_and_equals_the_real_step(phi_steps):
    fake, real = phi_steps["cuda"], phi_steps["cuda real"]
    assert fake["peak"] == real["peak"] and fake["phases"] == real["phases"]
    # fp32 LayerNorm inputs and gelu_new intermediates: more activations on the GPU than the CPU's lists give
    assert fake["phases"]["loss"]["activations"] > phi_steps["cpu"]["phases"]["loss"]["activations"]


def test_checkpointing_recomputes_the_forward_on_cudas_lists_too(phi_steps):
    # the recomputed layer runs in backward, under the autocast state checkpoint saved: the policy spans the step
    cuda, cpu = phi_steps["cuda ckpt"]["phases"], phi_steps["cpu ckpt"]["phases"]
    assert cuda["forward"]["activations"] - cpu["forward"]["activations"] < cuda["backward"]["total"] - cpu["backward"]["total"]


def test_the_harness_cpu_records_are_simulated_on_the_cpus_lists():
    from advisor.memory.setup import Setup
    from advisor.inputs.catalog import MODELS
    from advisor.simulate.habits import spec_options

    setup = Setup(arch=MODELS["SmolLM2-135M"].arch, method="lora", device="cpu")
    assert spec_options(setup)["amp"] == "cpu"
    assert spec_options(Setup(arch=MODELS["SmolLM2-135M"].arch, method="lora"))["amp"] == "cuda"
