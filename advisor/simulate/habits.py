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

LOSSES = ("standard", "chunked", "torchtune", "lowp")  # chunked: the harness's (head + loss recomputed per chunk)
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
    loss = {"full": "standard", "fused": "chunked", "chunked": "torchtune", "lowp": "lowp"}[kind]
    gpu_adamw = setup.device != "cpu" and setup.optimizer == "adamw" and "optimizer" not in setup.offloads
    return dict(loss=loss, hold_logits=setup.holds_logits and kind in ("full", "lowp"),
                adapter_dtype="bf16" if setup.adapted and setup.adapter_bytes == 2 else "auto",
                kbit_prep=setup.kbit_prep or setup.method != "qlora",
                autocast=setup.autocast or setup.precision == "bf16-mixed", fused_activations=setup.stack != "hf",
                attention="eager" if setup.attention == "eager" else "sdpa", lora_experts=setup.lora_experts,
                optimizer_impl=("fused" if setup.fused_optimizer else "foreach") if gpu_adamw else "default",
                amp="cpu" if setup.device == "cpu" else "cuda")  # fmt: skip
