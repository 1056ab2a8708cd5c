"""The stack habits the simulated step runs (``advisor.memory.setup``'s ``stack`` and its options), and the
ones it cannot run.

The harness's step is transformers' Trainer + peft. Other stacks run the same layers with other habits, and
these change what is allocated; the simulation runs each one, so PyTorch counts it:
- **adapters in the compute dtype** (torchtune, litgpt: ``adapter_bf16``): peft keeps LoRA weights in fp32
  and casts each adapted input to fp32 (its dropout output and mask saved per module); bf16 adapters save
  bf16 ones and step bf16 optimizer states;
- **QLoRA without** ``prepare_model_for_kbit_training`` (torchtune, litgpt; TRL skips it for sharded QLoRA):
  the norms, embeddings and head stay bf16 instead of fp32 (``kbit_prep=False``);
- **bf16-true** (torchtune, litgpt: ``autocast=False``): every op in the weights' dtype, no autocast casts;
- **torch's fused GELU** (torchtune, litgpt: ``fused_activations``): their models call
  ``F.gelu(approximate="tanh")``, which saves its input only; transformers' ``gelu_new`` (Phi, GPT-2) is
  written out in Python and autograd keeps its intermediates (``advisor.inputs.arch.COMPOSITE_ACT``);
- **torchtune's chunked output loss** (``loss="torchtune"``): the head writes its logits in
  ``CHUNKED_CE_CHUNKS`` sequence chunks, each upcast to fp32 for its cross-entropy; the recipe deletes
  the logits before backward;
- **Liger's fused linear cross-entropy** (``loss="liger"``, ``--loss fused``): chunk by chunk in forward, the
  logits become their own gradient in place; only the input's (and a training head's) gradient reach backward;
- **flash-attention-2** (``attention="flash"``, ``build.flash_attention_forward``): k and v saved unexpanded, no mask;
- **fused kernels** (``kernels``, ``--kernels``): the harness's own ``harness.kernels`` patched into the model
  (fused RMSNorm, SwiGLU, in-place RoPE, Unsloth's fused LoRA op), each saving what its Triton kernel saves;
- **a compute-dtype cross-entropy** (``loss="lowp"``: GPTBigCode's loss before transformers 4.45): no fp32
  upcast of the logits;
- **the loop holding the logits through backward** (``hold_logits``: litgpt's chunk list, a loop that keeps
  the model output): they stay allocated until the step's loss is dropped;
- **the optimizer's implementation on the GPU** (``optimizer_impl``): torch's AdamW picks ``foreach`` when
  every parameter is on CUDA, which materializes temporaries over all parameters at once (its
  ``sqrt(exp_avg_sq)``), ``fused=True`` (torchtune's configs) keeps none; on CPU it steps tensor by tensor.
  The simulated tensors are CPU ones, so the GPU's choice is passed explicitly.

What the simulation cannot run is counted by the analytic model's mechanism and added as a stated term
(``not_run``): ``torch.compile``'s loss (it saves only the compute-dtype logits and recomputes the rest),
bitsandbytes before 0.45 keeping each 4-bit matmul's input for backward (litgpt's 2023 QLoRA tables), and
weights or optimizer states offloaded to the host (``--offload params|optimizer``; activation offload is
simulated: ``advisor.simulate.offload``).
"""

from __future__ import annotations

import functools

# chunked: the harness's (head + loss recomputed per chunk); liger: fused linear cross-entropy (--loss fused)
LOSSES = ("standard", "chunked", "torchtune", "lowp", "liger")
OPTIMIZER_IMPLS = ("default", "foreach", "fused")


COMPOSITE_GELUS = ("NewGELUActivation", "FastGELUActivation")  # the tanh GELU written out in Python


def apply(model, s) -> None:
    """The habits that change the prepared model: fused GELU, bf16 adapters, QLoRA without kbit preparation."""
    import torch

    if s.fused_activations:
        from transformers.activations import GELUTanh

        for parent in list(model.modules()):
            for name, child in list(parent.named_children()):
                if type(child).__name__ in COMPOSITE_GELUS:
                    setattr(parent, name, GELUTanh())
    if s.method == "full" or s.precision == "fp32":
        return
    for p in model.parameters():
        quantized = getattr(p, "quant_state", None) is not None or p.dtype == torch.uint8
        if p.requires_grad and s.adapter_dtype == "bf16" and p.dtype == torch.float32:
            p.data = p.data.to(s.compute_dtype)
        elif not p.requires_grad and not s.kbit_prep and s.method == "qlora" and p.dtype == torch.float32 and not quantized:
            p.data = p.data.to(s.weight_dtype)  # undo prepare_model_for_kbit_training's fp32 upcast


def targets_for(model, s) -> str:
    """``method.targets`` for the step: on an MoE model without ``lora_experts``, all-linear names the Linear
    layers (attention, shared experts) so peft does not reach the fused experts as it does for "all-linear"."""
    if s.lora_experts or s.targets != "all-linear" or s.method == "full":
        return s.targets
    if not any(name.endswith("experts") for name, _ in model.named_modules()):
        return s.targets
    from harness.methods.lora import linear_names

    return "+".join(linear_names(model))


def optimizer_kwargs(cls, s) -> dict:
    """torch AdamW's implementation as the GPU would pick it (``optimizer_impl``); others are left alone."""
    import torch

    if s.optimizer_impl not in OPTIMIZER_IMPLS:
        raise ValueError(f"unknown optimizer implementation '{s.optimizer_impl}' ({', '.join(OPTIMIZER_IMPLS)})")
    if s.optimizer_impl == "default" or not issubclass(cls, (torch.optim.Adam, torch.optim.AdamW)):
        return {}
    return {"foreach": True} if s.optimizer_impl == "foreach" else {"fused": True}


def loss(model, batch: dict, s):
    """The step's loss under the stack's habit; ``loss.held``: the logits a loop keeps until the loss is dropped."""
    from harness.loss import causal_lm_loss

    if s.loss not in LOSSES:
        raise ValueError(f"unknown simulated loss '{s.loss}' ({', '.join(LOSSES)})")
    if s.loss == "chunked" or (s.loss == "standard" and not s.hold_logits):  # chunked never holds whole logits
        return causal_lm_loss(model, batch, s.loss)
    if s.loss == "torchtune":
        return _torchtune_chunked(model, batch)
    if s.loss == "liger":
        return _fused_linear_cross_entropy(model, batch)
    if s.loss == "lowp":
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        out = _cross_entropy_lowp(logits, batch["labels"])
    else:  # standard, the output held
        res = model(**batch)
        out, logits = res.loss, res.logits
    if s.hold_logits:
        out.held = logits
    return out


def _cross_entropy_lowp(logits, labels):
    """Cross-entropy on the logits as they are (the compute dtype), no fp32 upcast."""
    import torch
    import torch.nn.functional as F

    from harness.loss import IGNORE, next_token_labels

    labels = next_token_labels(labels)
    with torch.autocast("cpu", enabled=False):  # autocast would run the cross-entropy in fp32
        flat = logits.reshape(-1, logits.shape[-1])
        return F.cross_entropy(flat, labels.reshape(-1), ignore_index=IGNORE, reduction="sum") / (labels != IGNORE).sum()


def _fused_linear_cross_entropy(model, batch: dict):
    """``--loss fused``: Liger's fused linear cross-entropy (``LigerFusedLinearCrossEntropyLoss``) on the decoder's
    hidden states and the head's weight. A head with adapters of its own (LoRA on ``lm_head``) is not a plain
    weight for it; that step runs the harness's chunked loss instead."""
    import torch

    from advisor.memory.activations import fused_chunk_rows
    from harness.loss import IGNORE, causal_lm_loss, decoder_output, next_token_labels

    lm = model.get_base_model() if hasattr(model, "get_base_model") else model
    head = lm.get_output_embeddings()
    if type(head) is not torch.nn.Linear or head.bias is not None:
        return causal_lm_loss(model, batch, "chunked")
    lm, hidden = decoder_output(model, batch)
    labels = next_token_labels(batch["labels"]).reshape(-1)
    hidden = hidden.reshape(-1, hidden.shape[-1])
    chunk = fused_chunk_rows(hidden.shape[0], head.weight.shape[0], hidden.shape[1])
    return fused_linear_ce().apply(hidden, head.weight, labels, chunk, (labels != IGNORE).sum())


@functools.cache
def fused_linear_ce():
    """The autograd Function (built on first use: this module is imported on torch-free paths too)."""
    import torch

    from harness.loss import IGNORE

    class FusedLinearCE(torch.autograd.Function):
        """Liger's algorithm (``liger_kernel.ops.fused_linear_cross_entropy``): forward walks the tokens ``chunk``
        rows at a time; each chunk's logits (``hidden @ W.T``, compute dtype) become their own gradient in place
        (softmax − one-hot, / the scored tokens: Liger's Triton kernel does the fp32 math in registers), then
        the input's gradient rows and, when the head trains, the head's gradient are accumulated. Only those
        gradients live on to backward, which scales them; the B × S × V logits never exist."""

        @staticmethod
        def forward(ctx, hidden, weight, labels, chunk, n_scored):
            grad_in = torch.zeros_like(hidden)
            grad_w = torch.zeros_like(weight) if weight.requires_grad else None
            loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
            n = n_scored.clamp(min=1)
            for start in range(0, hidden.shape[0], chunk):
                h, y = hidden[start : start + chunk], labels[start : start + chunk]
                logits = h @ weight.t()
                keep = (y != IGNORE).unsqueeze(1)
                target = y.clamp(min=0).unsqueeze(1)
                top = logits.amax(dim=1, keepdim=True)
                picked = logits.gather(1, target).float()
                logits.sub_(top).exp_()
                total = logits.sum(dim=1, keepdim=True, dtype=torch.float32)
                loss += ((total.log() + top.float() - picked) * keep).sum()
                logits.div_(total.to(logits.dtype))  # softmax, in place
                logits.scatter_add_(1, target, torch.full_like(picked, -1, dtype=logits.dtype))
                logits.mul_(keep.to(logits.dtype)).div_(n.to(logits.dtype))
                grad_in[start : start + chunk] = logits @ weight
                if grad_w is not None:
                    grad_w.addmm_(logits.t(), h)
                del logits
            ctx.save_for_backward(grad_in, *([grad_w] if grad_w is not None else []))
            return loss / n

        @staticmethod
        def backward(ctx, grad_out):
            grad_in, *grad_w = ctx.saved_tensors
            return grad_in * grad_out, (grad_w[0] * grad_out if grad_w else None), None, None, None

    return FusedLinearCE


def _torchtune_chunked(model, batch: dict):
    """torchtune's ``CEWithChunkedOutputLoss``: the head applied to each of ``CHUNKED_CE_CHUNKS`` sequence chunks
    (its ``TransformerDecoder(num_output_chunks=8)``), every chunk upcast to fp32 for its own cross-entropy."""
    import torch.nn.functional as F

    from advisor.memory.activations import CHUNKED_CE_CHUNKS
    from harness.loss import IGNORE, decoder_output, next_token_labels

    lm, hidden = decoder_output(model, batch)
    head = lm.get_output_embeddings()
    labels = next_token_labels(batch["labels"])
    logits = [head(h) for h in hidden.chunk(CHUNKED_CE_CHUNKS, dim=1)]
    total = sum(
        F.cross_entropy(x.reshape(-1, x.shape[-1]).float(), y.reshape(-1), ignore_index=IGNORE, reduction="sum")
        for x, y in zip(logits, labels.chunk(CHUNKED_CE_CHUNKS, dim=1))
    )
    del logits  # the recipe's `del logits` before backward: each chunk's fp32 log-softmax stays saved
    return total / (labels != IGNORE).sum()


def not_run(setup) -> list[tuple[float, str, tuple[str, ...], str]]:
    """[(GiB, why, phases, tracker kind)]: what the analytic model adds for the habits and options the simulation cannot run:
    ``torch.compile``'s loss and bitsandbytes < 0.45's saved input (at the loss and backward), and weights or
    optimizer states offloaded to the host (``--offload params|optimizer``: gone from every phase)."""
    from dataclasses import replace

    from advisor.memory.estimate import estimate

    terms = []
    why = [w for on, w in ((setup.compile, "torch.compile's loss"),
                           (setup.bnb_keeps_input, "bitsandbytes < 0.45 keeping each 4-bit matmul's input")) if on]  # fmt: skip
    host = tuple(p for p in ("params", "optimizer") if p in setup.offloads)  # activation offload is simulated
    if not (why or host):
        return terms
    peak = estimate(setup).peak_allocated_gb
    if why:
        gb = peak - estimate(replace(setup, compile=False, bnb_saves_input=False)).peak_allocated_gb
        terms.append((gb, f"not simulated, counted by the analytic model: {' and '.join(why)} ({gb:+.2f} GB)", ("loss", "backward"),
                      "activations"))
    if host:
        gb = peak - estimate(replace(setup, offload="activations" if "activations" in setup.offloads else "none")).peak_allocated_gb
        terms.append((gb, f"not simulated, counted by the analytic model: {' and '.join(host)} offloaded to the host ({gb:+.2f} GB)",
                      ("forward", "loss", "backward", "optimizer step"), "parameters" if host == ("params",) else "optimizer_states"))  # fmt: skip
    return terms


def add_not_run(result: dict, setup) -> dict:
    """``result`` (``step.run``'s bytes by phase and kind) with ``not_run``'s terms added to the phases each changes."""
    from advisor.inputs.catalog import GIB

    terms = not_run(setup)
    if not terms:
        return result
    phases = {n: dict(p) for n, p in result["phases"].items()}
    for gb, _, names, kind in terms:
        for name in names:
            if name in phases:
                phases[name][kind] = phases[name].get(kind, 0) + int(gb * GIB)
                phases[name]["total"] += int(gb * GIB)
    peak = max(phases.values(), key=lambda p: p["total"])
    return {**result, "phases": phases, "peak": peak, "notes": (*result.get("notes", ()), *(t[1] for t in terms))}


def spec_options(setup) -> dict:
    """``step.StepSpec`` fields of a ``memory.setup.Setup``'s stack and options."""
    kind = setup.loss_kind
    # fused: Liger's algorithm; the harness's own records (train.loss=chunked: a fixed chunk) run the harness's loss
    fused = "chunked" if setup.loss_chunk_tokens else "liger"
    loss = {"full": "standard", "fused": fused, "chunked": "torchtune", "lowp": "lowp"}[kind]
    gpu_adamw = setup.device != "cpu" and setup.optimizer == "adamw" and "optimizer" not in setup.offloads
    return dict(loss=loss, hold_logits=setup.holds_logits and kind in ("full", "lowp"),
                adapter_dtype="bf16" if setup.adapted and setup.adapter_bytes == 2 else "auto",
                kbit_prep=setup.kbit_prep or setup.method != "qlora", double_quant=setup.double_quant,
                autocast=setup.autocast or setup.precision == "bf16-mixed", fused_activations=setup.stack != "hf",
                attention=setup.attention, lora_experts=setup.lora_experts, kernels=setup.kernels,
                optimizer_impl=("fused" if setup.fused_optimizer else "foreach") if gpu_adamw else "default",
                amp="cpu" if setup.device == "cpu" else "cuda")  # fmt: skip
