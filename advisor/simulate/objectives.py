"""GRPO and DPO by phase, simulated: the phases ``advisor.memory.rl`` reports, each run on fake tensors.

- **training**: the supervised step of ``advisor.simulate.run`` on what TRL trains at once: DPO,
  chosen + rejected = 2 × pairs sequences; GRPO, completions × (prompt + completion) tokens. TRL
  scores only the completion's logits (``logits_to_keep``); the simulated step computes the loss
  over every position, so its logits are an upper bound at long prompts (said in the notes).
- **reference** (DPO; GRPO with β > 0): a no-grad forward of the same sequences (GRPO: logits of
  the completion + 1 positions) with the resident state: PEFT switches the adapters off (no second
  copy); full fine-tuning holds a frozen copy of the weights in the compute dtype in every phase.
- **generation** (GRPO): the generation batch (per-device batch × accumulation steps) in one
  no-grad prefill of prompt + completion tokens with the KV cache on (``use_cache``, last-position
  logits): the cache at its final length plus one prefill's activations, over the resident state.

The resident state (weights, quant constants, optimizer states; no gradients, freed by
``zero_grad``) is read off the training step's optimizer phase.
"""

from __future__ import annotations

from dataclasses import replace

from advisor.inputs.catalog import GIB


def _resident(extras: dict) -> float:
    k = extras["phases"]["optimizer step"]["kinds"]
    return k["parameters"] + k["buffers"] + k["optimizer_states"] + k["other"]


def forward_only(config: dict, spec, batch: int, seq: int, *, keep: int | None = None, cache: bool = False) -> dict:
    """Peak (GiB by kind) of a no-grad forward of ``batch × seq`` tokens on the prepared model."""
    import torch
    from torch._subclasses.fake_tensor import FakeTensorMode

    from advisor.simulate import build
    from advisor.simulate.step import _autocast, padded_batch, prepared_model
    from advisor.simulate.mem_tracking import PeakTracker

    model = prepared_model(config, replace(spec, checkpointing="none"))
    model.eval()
    with FakeTensorMode(allow_non_fake_inputs=True):
        quant = build.fakeify(model, spec.compute_dtype)
        b = padded_batch(model.get_input_embeddings().num_embeddings, replace(spec, batch_size=batch, seq_len=seq))
        tracker = PeakTracker()
        tracker.track_external(model, *quant, b["input_ids"], b["attention_mask"])
        with tracker, torch.no_grad(), _autocast(spec):
            out = model(input_ids=b["input_ids"], attention_mask=b["attention_mask"], use_cache=cache,
                        logits_to_keep=keep if keep is not None else 0)  # fmt: skip
            logits = out.logits.float()
            torch.log_softmax(logits, dim=-1)  # the per-token log-probs TRL takes (fp32)
            del out, logits
    return {k: v / GIB for k, v in tracker.peak().items()}


def _phase(name: str, resident: float, peak: dict, extra: float = 0.0) -> dict:
    transient = peak["total"] - peak["parameters"] - peak["buffers"] - peak["other"]  # what the forward adds
    items = {"resident_state": resident, "reference_weights": extra, "forward": max(0.0, transient)}
    return {"name": name, "items": {k: round(v, 3) for k, v in items.items()}, "allocated_gb": round(sum(items.values()), 3)}


def simulate_objective(setup, model, objective, *, trust_remote_code: bool = False, spec_over: dict | None = None) -> dict:
    """Every phase of ``objective`` (``advisor.memory.rl.Objective``) on ``setup``: the keys of
    ``SetupEstimate.to_dict`` plus ``"simulated": true`` and the training step's own extras."""
    from advisor.simulate import config_for, run, step_spec

    cfg = config_for(model)
    c = objective.max_completion_len
    grpo = objective.name == "grpo"
    train = replace(setup, seq_len=setup.seq_len + c) if grpo else replace(setup, batch_size=2 * setup.batch_size)
    b, extras = run(train, model, config=cfg, trust_remote_code=trust_remote_code, spec_over=spec_over)
    spec = step_spec(train, trust_remote_code=trust_remote_code, **(spec_over or {}))
    resident = _resident(extras)
    ref_copy = setup.arch.total_params * setup.act_bytes / setup.gpus / GIB if objective.needs_reference and not setup.adapted else 0.0
    phases, notes = [], []
    if grpo:
        gen_batch = setup.batch_size * setup.grad_accum
        gen = forward_only(cfg, spec, gen_batch, setup.seq_len + c, keep=1, cache=True)
        phases.append(_phase("generation", resident, gen, ref_copy))
        notes.append(f"generation: {gen_batch} sequences × {setup.seq_len + c} tokens prefilled with the KV cache on")
        notes.append("training: the loss over every position (TRL keeps only the completion's logits): an upper bound")
    if objective.needs_reference:
        ref = forward_only(cfg, spec, train.batch_size, train.seq_len, keep=c + 1 if grpo else None)
        phases.append(_phase("reference", resident, ref, ref_copy))
    phases.append({"name": "training", "items": {"step": round(b.peak_allocated_gb, 3), "reference_weights": round(ref_copy, 3)},
                   "allocated_gb": round(b.peak_allocated_gb + ref_copy, 3)})  # fmt: skip
    peak = max(phases, key=lambda p: p["allocated_gb"])
    over = b.peak_reserved_gb - b.peak_allocated_gb
    return {
        "objective": objective.name, "simulated": True, "generation_batch": setup.batch_size * setup.grad_accum if grpo else 0,
        "reference": "none" if not objective.needs_reference else ("frozen copy" if ref_copy else "adapters off"),
        "peak_phase": peak["name"], "peak_allocated_gb": peak["allocated_gb"],
        "peak_reserved_gb": round(peak["allocated_gb"] + over, 3), "cpu_resident_gb": None,
        "peak_gb_high": round(peak["allocated_gb"] + b.peak_reserved_gb_range[1] - b.peak_allocated_gb + b.cuda_context_gb, 3),
        "phases": phases, "notes": notes + list(b.notes), "training_step": extras,
    }  # fmt: skip


__all__ = ["forward_only", "simulate_objective"]
