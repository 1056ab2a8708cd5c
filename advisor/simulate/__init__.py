"""``advisor estimate --simulate``: the harness's own training step on fake tensors, measured by
PyTorch's memory tracker. The only part of the advisor that imports torch (and the harness).

Nothing is computed and nothing is allocated: the model is built on the meta device, then every
tensor is a ``FakeTensor`` (``torch._subclasses.fake_tensor.FakeTensorMode``), and
``torch.distributed._tools.mem_tracker.MemTracker`` counts what each operator would allocate, by
kind (parameters, gradients, optimizer states, activations, temporaries). A 7B step takes
seconds on a laptop CPU, with under 1 GB of memory; any architecture transformers builds is covered.

Snags met building it (torch 2.13, transformers 5, peft 0.21, bitsandbytes 0.50), and their ways round:
- MemTracker hooks every parameter and walks every module per operator → ``tracker.PeakTracker``;
- fake CUDA tensors abort backward on a CPU build of torch → fake CPU tensors; SDPA then picks
  the CPU flash kernel, which saves what the GPU flash/memory-efficient kernels save (q, k, v, the
  output, an fp32 logsumexp per head and position);
- transformers treats fake tensors as tracing and builds a full 4-D mask: what a padded batch
  (the harness's) really does;
- ``Params4bit`` cannot wrap a fake tensor → ``build.fakeify`` (a uint8 parameter + fake quant state);
- the optimizer state exists only after a first step → two steps are simulated.

Modules: ``model_config`` (the transformers config of a model), ``build`` (meta → fake model; 4-bit
and float8 linears), ``mem_tracking`` (the trackers' peaks), ``step`` (the step itself, also on real
tensors for the tests), ``habits`` (another stack's habits in that step: bf16 adapters, no kbit
preparation, bf16-true, fused GELU, its loss, held logits, the GPU's AdamW), ``amp`` (CUDA's autocast op
lists on the CPU's autocast), ``offload`` (activations to host), ``sharded`` (one FSDP2 rank),
``objectives`` (GRPO / DPO by phase), ``overhead`` (reserved memory and the range, term by term),
``report`` (the analytic estimate's keys), ``cli`` and ``validate_sim`` (the commands).
"""

from __future__ import annotations

import time


def step_spec(setup, **over):
    """``advisor.memory.setup.Setup`` → ``step.StepSpec``; the stack's habits and options through
    ``habits.spec_options``."""
    from advisor.simulate.habits import spec_options
    from advisor.simulate.step import StepSpec

    ckpt = getattr(setup, "checkpointing", None) or ("full" if setup.grad_checkpointing else "none")
    offload = getattr(setup, "offload", "none")
    kw = dict(method=setup.method, rank=setup.rank, targets=setup.targets, batch_size=setup.batch_size,
              seq_len=setup.seq_len, checkpointing=ckpt, precision=setup.precision,
              optimizer="adamw8bit" if setup.optimizer == "paged_adamw8bit" else setup.optimizer,
              offload_activations="activations" in str(offload), lora_dropout=setup.lora_dropout,
              float8=bool(getattr(setup, "float8", False)),
              grad_accum=min(setup.grad_accum, 2), **spec_options(setup))  # fmt: skip
    return StepSpec(**{**kw, **over})


def config_for(model) -> dict:
    """The transformers config of an ``advisor.inputs.catalog.Model``: its config.json if it came from one."""
    from pathlib import Path

    from advisor.simulate import model_config

    if getattr(model, "config", None) is not None:
        return model.config
    if model.hub_id and (Path(model.hub_id) / "config.json").is_file():
        return model_config.from_path(model.hub_id)
    return model_config.from_catalog(model)


def run(setup, model, *, config: dict | None = None, trust_remote_code: bool = False, spec_over: dict | None = None):
    """(``memory.Breakdown``, extras) of one simulated supervised step: see ``simulate``. ``spec_over``: StepSpec
    fields that differ from the setup's (the harness's CPU records: CPU autocast and optimizer)."""
    from advisor.simulate import report, step

    t0 = time.time()
    cfg = config if config is not None else config_for(model)
    spec = step_spec(setup, trust_remote_code=trust_remote_code, **(spec_over or {}))
    if setup.gpus > 1 and setup.sharding != "ddp":
        from advisor.simulate import sharded

        result = sharded.run(cfg, spec, setup.gpus, setup.sharding)
    else:
        result = step.run(cfg, spec)
    from advisor.simulate.habits import add_not_run

    result = add_not_run(result, setup)
    result["seconds"] = time.time() - t0
    b = report.breakdown(result, adapted=setup.adapted, per_gpu=setup.gpus > 1, notes=result.get("notes", ()), device=setup.device,
                         gpus=setup.gpus)
    return b, report.extras(result, adapted=setup.adapted, gpus=setup.gpus)


def simulate(setup, model, *, config: dict | None = None, trust_remote_code: bool = False) -> dict:
    """Simulate one supervised training step of ``setup`` (``advisor.memory.setup.Setup``) on ``model``
    (``advisor.inputs.catalog.Model``; ``config``: its transformers config dict, else found from the model).

    Returns the analytic estimate's JSON (``render_estimate.estimate_dict``) from the simulated
    breakdown, plus ``"simulated": true``, ``kinds``, ``phases`` (GB by phase and kind),
    ``overhead`` (reserved memory and its range, term by term) and ``simulation_s``."""
    b, extras = run(setup, model, config=config, trust_remote_code=trust_remote_code)
    return as_dict(model, setup, b, extras)


def as_dict(model, setup, b, extras: dict) -> dict:
    """The analytic estimate's JSON keys from the simulated breakdown; the parameter count is the built model's."""
    from advisor.render import estimate as render_estimate

    d = render_estimate.estimate_dict(model, setup, b)
    d["model_params_b"] = round(b.total_params / 1e9, 3)
    return {**d, **extras}


__all__ = ["as_dict", "config_for", "run", "simulate", "step_spec"]
