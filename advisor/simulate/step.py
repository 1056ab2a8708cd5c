"""The harness's training step, run on fake tensors under PyTorch's memory tracker.

What runs is what ``harness.train.sft`` runs through transformers' Trainer, step by step:
``model(input_ids, attention_mask, labels).loss`` (the model's own cross-entropy, logits upcast
to fp32) or the harness's chunked loss (``harness.loss``); ``loss.backward()``; the Trainer's
optimizer (``Trainer.get_optimizer_cls_and_kwargs`` on the harness's ``train.optimizer``);
``optimizer.step()``; ``zero_grad(set_to_none=True)``. Under autocast for bf16 compute, as the
Trainer's ``bf16=True``, with the GPU's autocast op lists (``advisor.simulate.amp``). Two steps: the optimizer states exist only after the first.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace

import torch

from advisor.simulate.mem_tracking import PeakTracker


@dataclass(frozen=True)
class StepSpec:
    """What the step needs, in the harness's terms (``harness.spec.TrainSpec`` fields and the method)."""

    method: str = "lora"  # full | lora | qlora | dora
    rank: int = 16
    targets: str = "all-linear"
    batch_size: int = 1
    seq_len: int = 512
    checkpointing: str = "none"  # none | full | selective (harness.checkpointing)
    precision: str = "bf16"  # bf16 (weights and compute) | bf16-true (the same, never autocast) | fp32 | bf16-mixed (fp32 weights, bf16 autocast)
    optimizer: str = "adamw"
    loss: str = "standard"  # standard (the model's, full logits) | chunked (harness.loss) | torchtune | lowp (habits)
    offload_activations: bool = False  # saved tensors to host (torch.autograd.graph.save_on_cpu)
    lora_dropout: float = 0.05
    float8: bool = False  # torchao's Float8Linear for every linear but the head (tensorwise scaling)
    adapter_dtype: str = "auto"  # auto: peft's fp32 adapters | bf16: in the compute dtype (habits)
    kbit_prep: bool = True  # QLoRA through prepare_model_for_kbit_training (the harness's); False: torchtune, litgpt
    double_quant: bool = True  # QLoRA: NF4 absmax quantized again (the harness's BitsAndBytesConfig); False: fp32 absmax (litgpt's bnb.nf4)
    autocast: bool = True  # bf16 compute by torch.autocast (the Trainer's bf16=True); False: bf16-true
    attention: str = "sdpa"  # sdpa (k, v repeated per head) | flash (k, v unexpanded, no mask) | eager (S × S probabilities saved)
    fused_activations: bool = False  # torch's fused GELU for transformers' Python-written one (torchtune, litgpt)
    kernels: tuple = ()  # harness.kernels: rms_norm, swiglu, rope, lora (Liger's, Unsloth's, fms-acceleration's fused kernels)
    lora_experts: bool = True  # MoE: peft's all-linear adapts the fused experts too; False: attention and shared MLPs
    hold_logits: bool = False  # the loop keeps the logits until the loss is dropped (litgpt)
    optimizer_impl: str = "default"  # default (this device's choice) | foreach (CUDA's default AdamW) | fused
    amp: str = "cuda"  # whose autocast op lists (advisor.simulate.amp): cuda (a GPU step) | cpu (the harness's CPU records)
    grad_accum: int = 1  # 2: the second micro-batch's forward runs with the first one's gradients alive
    steps: int = 2
    trust_remote_code: bool = False
    options: dict = field(default_factory=dict)

    @property
    def weight_dtype(self) -> torch.dtype:
        return torch.bfloat16 if self.precision in ("bf16", "bf16-true") else torch.float32

    @property
    def compute_dtype(self) -> torch.dtype:
        return torch.float32 if self.precision == "fp32" else torch.bfloat16


def harness_specs(s: StepSpec):
    """The harness's own ``MethodSpec`` and ``TrainSpec`` for this step (what ``prepare`` reads)."""
    from harness.spec import MethodSpec, TrainSpec

    method = MethodSpec(name=s.method, default_lr=1e-4, r=None if s.method == "full" else s.rank, alpha=None,
                        dropout=s.lora_dropout if s.method != "full" else 0.0, targets=s.targets,
                        quantize="4bit" if s.method == "qlora" else None, use_dora=s.method == "dora", inner=None,
                        world_size=1, options={}, init_from=None)  # fmt: skip
    train = TrainSpec(max_steps=s.steps, epochs=1, batch_size=s.batch_size, grad_accum=1, lr=None, warmup_ratio=0.0,
                      scheduler="constant", weight_decay=0.0, max_seq_len=s.seq_len,
                      grad_checkpointing=s.checkpointing != "none", dtype="fp32" if s.precision == "fp32" else "bf16",
                      optimizer=s.optimizer, measure_skip_steps=0, save="none", log_every=1, batching="shuffled",
                      loss=s.loss if s.loss in ("standard", "chunked") else "standard", checkpointing=s.checkpointing,
                      kernels=s.kernels)  # fmt: skip
    return method, train


def optimizer_for(params, name: str, s: StepSpec | None = None):
    """The optimizer class and arguments transformers' Trainer builds for the harness's ``train.optimizer``
    (with ``s``: its implementation as the target device picks it, ``habits.optimizer_kwargs``)."""
    import tempfile

    from transformers import Trainer, TrainingArguments

    from harness.train import OPTIM

    from transformers.utils import logging

    level = logging.get_verbosity()
    logging.set_verbosity_error()  # a fake process group makes TrainingArguments warn about DDP
    try:
        args = TrainingArguments(output_dir=tempfile.gettempdir(), optim=OPTIM[name], use_cpu=True, report_to=[])
    finally:
        logging.set_verbosity(level)
    cls, kwargs = Trainer.get_optimizer_cls_and_kwargs(args)
    if s is not None:
        from advisor.simulate.habits import optimizer_kwargs

        kwargs = {**kwargs, **optimizer_kwargs(cls, s)}
    return cls(params, **kwargs)


def prepared_model(config: dict, s: StepSpec):
    """Meta model → (QLoRA: 4-bit linears) → the harness method's ``prepare`` → checkpointing on."""
    from advisor.simulate import build
    from harness.methods import get_method

    from advisor.errors import AdvisorError
    from harness.errors import UserError

    try:
        model = build.meta_model(config, s.weight_dtype, trust_remote_code=s.trust_remote_code, attention=s.attention)
    except (ValueError, KeyError, ImportError) as e:
        raise AdvisorError(f"--simulate: transformers cannot build this config (model_type "
                           f"'{config.get('model_type')}'): {str(e).splitlines()[0][:200]}") from None  # fmt: skip
    if s.method == "qlora":
        build.quantize_linears(model, s.compute_dtype, double_quant=s.double_quant)
    if s.float8:
        build.float8_linears(model)
    from advisor.simulate.habits import targets_for

    method, train = harness_specs(replace(s, targets=targets_for(model, s)))
    try:
        model = get_method(s.method).prepare(model, method, train)
    except (ValueError, UserError) as e:  # what the harness's own run would stop on (peft refusing a target, …)
        raise AdvisorError(f"--simulate: the harness's {s.method} cannot be set up on this model: {str(e).splitlines()[0][:240]}") from None
    if s.checkpointing != "none":
        from harness.checkpointing import enable

        enable(model, s.checkpointing)
    from advisor.simulate.habits import apply

    apply(model, s)
    if s.kernels:
        from harness.kernels import apply as fuse

        fuse(model, s.kernels)
    model.train()
    return model


def _autocast(s: StepSpec):
    if s.precision in ("fp32", "bf16-true") or not s.autocast:
        return contextlib.nullcontext()
    stack = contextlib.ExitStack()
    stack.enter_context(amp_policy(s))
    stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16))
    return stack


def amp_policy(s: StepSpec):
    """The target device's autocast op lists on the CPU's autocast (``advisor.simulate.amp``), for the whole step."""
    from advisor.simulate import amp

    return amp.policy(s.amp)


def _offload(s: StepSpec):
    if not s.offload_activations:
        return contextlib.nullcontext()
    from advisor.simulate.offload import saved_to_host

    return saved_to_host()


def step_loss(model, batch: dict, s: StepSpec):
    from advisor.simulate.habits import loss

    with _autocast(s), _offload(s):
        return loss(model, batch, s)


def padded_batch(vocab: int, s: StepSpec) -> dict:
    """The harness's right-padded batch (``harness.train.collate``): the first row is one token
    short, so a real run builds the 4-D padding mask, as a fake one always does."""
    ids = torch.randint(0, vocab, (s.batch_size, s.seq_len))
    mask = torch.ones(s.batch_size, s.seq_len, dtype=torch.long)
    if s.seq_len > 1:
        mask[0, -1] = 0
    return {"input_ids": ids, "attention_mask": mask, "labels": ids.clone()}


def run(config: dict, s: StepSpec, *, real: bool = False) -> dict:
    """Simulate ``s.steps`` training steps; returns the tracker's global peak and phase peaks (bytes).
    ``real=True`` runs the same step on real CPU tensors (tests compare the two)."""
    from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily

    from advisor.simulate import build

    model = prepared_model(config, s)
    with contextlib.nullcontext() if real else FakeTensorMode(allow_non_fake_inputs=True):
        quant = build.fakeify(model, s.compute_dtype, real=real)
        batch = padded_batch(model.get_input_embeddings().num_embeddings, s)
        trainable = [p for p in model.parameters() if p.requires_grad]
        with unset_fake_temporarily():  # bitsandbytes' 8-bit optimizers build their quantization map (real values) at init
            opt = optimizer_for(trainable, s.optimizer, s)
        tracker = PeakTracker()
        tracker.track_external(model, *quant, *batch.values())
        head = model.get_output_embeddings().register_forward_pre_hook(lambda *a: setattr(tracker, "phase", "loss"))
        with tracker, amp_policy(s):
            for _ in range(s.steps):
                tracker.phase = None
                for _ in range(s.grad_accum):
                    loss = step_loss(model, batch, s)
                    loss.backward()
                    del loss
                    tracker.collect()
                opt.step()
                opt.zero_grad(set_to_none=True)
        head.remove()
        facts = counts(model, quant, opt, s)
    return {"peak": tracker.peak(), "phases": tracker.phase_peaks, **facts}


def counts(model, quant: list, opt, s: StepSpec) -> dict:
    """Static facts the report needs: parameter counts and bytes, long-lived tensors, the 4-bit dequantize buffer."""
    from harness.methods.base import count_params

    trainable, total = count_params(model)
    params = {id(p): p for p in model.parameters()}
    train_bytes = sum(p.numel() * p.element_size() for p in params.values() if p.requires_grad)
    states = [v for st in opt.state.values() for v in st.values() if torch.is_tensor(v)]
    lived = [t.numel() * t.element_size() for t in [*params.values(), *states]]
    lived += [p.numel() * p.element_size() for p in params.values() if p.requires_grad]  # their gradients
    n4 = [qs_numel(p) for p in params.values() if getattr(p, "quant_state", None) is not None]
    return {"trainable_params": trainable, "total_params": total, "trainable_bytes": train_bytes,
            "quant_bytes": sum(t.numel() * t.element_size() for t in quant),
            "long_lived_bytes": lived,
            "bnb_dequant_bytes": max(n4, default=0) * torch.empty((), dtype=s.compute_dtype).element_size()}  # fmt: skip


def qs_numel(p) -> int:
    shape = p.quant_state.shape
    return int(shape[0]) * int(shape[1])
