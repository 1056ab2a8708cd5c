"""``advisor estimate --simulate``: run the simulation and print it as the analytic estimate is printed."""

from __future__ import annotations

import json

from advisor.errors import AdvisorError


def _require_torch() -> None:
    import importlib.util

    missing = [m for m in ("torch", "transformers", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise AdvisorError(f"--simulate needs {', '.join(missing)}: pip install 'tunebench[harness]'")


def resolve_for_simulation(text: str):
    """``--model`` for ``--simulate``: the catalog's model, or a config.json the analytic path cannot
    size (a hybrid Mamba / linear-attention model): then a stand-in shape carries the flags, and
    the simulation builds the real model from the file."""
    from dataclasses import dataclass
    from pathlib import Path

    from advisor.inputs.catalog import resolve_model
    from advisor.simulate import model_config

    path = Path(text).expanduser()
    if not (path.is_file() or (path / "config.json").is_file()):
        return resolve_model(text)  # a catalog name or a size
    cfg = model_config.from_path(path)
    try:
        arch = resolve_model(text).arch  # the analytic shape, where the advisor can size it
    except AdvisorError:  # one it cannot (hybrid Mamba / linear attention): a stand-in carries the flags
        arch = model_config.stand_in_arch(cfg)
    label = model_config.label(model_config.raw(path))

    @dataclass(frozen=True)
    class FromConfig:
        name: str
        hub_id: str
        arch: object
        config: dict
        params: int = 0

    return FromConfig(label, str(path if path.is_dir() else path.parent), arch, cfg)


def run_simulation(args, model, setup, objective) -> int:
    """The simulated estimate; a step that fails on fake tensors is one line naming the error (exit 2)."""
    try:
        return _run_simulation(args, model, setup, objective)
    except (RuntimeError, NotImplementedError, TypeError, ValueError, AttributeError, AssertionError) as e:
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise AdvisorError(f"--simulate: this step could not be run on fake tensors ({type(e).__name__}: {first}); "
                           "the analytic estimate is the command without --simulate") from None  # fmt: skip


def _run_simulation(args, model, setup, objective) -> int:
    from advisor.render import estimate as render_estimate
    from advisor.simulate import run

    _require_torch()
    if objective.name != "sft":
        from advisor.simulate.objectives import simulate_objective

        d = simulate_objective(setup, model, objective, trust_remote_code=args.trust_remote_code)
        print(json.dumps(d, indent=2)) if args.json else print_objective(d)
        return 0
    b, extras = run(setup, model, trust_remote_code=args.trust_remote_code)
    if hasattr(model, "config"):  # a config the catalog cannot size: the built model's count
        from dataclasses import replace

        model = replace(model, params=b.total_params)
    step = _step_time(args, model, setup)
    if args.json:
        from advisor.simulate import as_dict

        d = as_dict(model, setup, b, extras)
        if step is not None:
            d["step_time"] = step
        print(json.dumps(d, indent=2))
        return 0
    render_estimate.print_estimate(model, setup, b)
    print_simulation(extras, setup.stack)
    if step is not None:
        from advisor.simulate.timing import print_time

        print_time(step)
    return 0


def _step_time(args, model, setup) -> dict | None:
    """``--gpu``: the simulated step's operators priced on that GPU (advisor/simulate/pricing.py)."""
    if not getattr(args, "gpu", None):
        return None
    from advisor.inputs.catalog import parse_gpu
    from advisor.simulate import config_for
    from advisor.simulate.timing import device_for, simulated_time, time_dict

    dev = device_for(parse_gpu(args.gpu))
    shards = setup.gpus if setup.gpus > 1 and setup.sharding != "ddp" else 1  # FSDP: each rank steps 1/N of the parameters
    priced, totals = simulated_time(setup, config_for(model), dev, optimizer_shards=shards, trust_remote_code=args.trust_remote_code)
    return time_dict(priced, totals, dev)


def print_simulation(d: dict, stack: str = "hf") -> None:
    step = "the harness's own step" if stack == "hf" else f"the harness's step with {stack}'s habits (advisor/simulate/habits.py)"
    print(f"simulated on fake tensors in {d['simulation_s']} s ({step}; PyTorch's MemTracker)")
    for name, p in d["phases"].items():
        kinds = ", ".join(f"{k} {v:.2f}" for k, v in p["kinds"].items() if v >= 0.005)
        print(f"  {name:<15} {p['allocated_gb']:8.2f} GB allocated  ({kinds})")
    o = d["overhead"]
    lo, hi = o["reserved_gb_range"]
    print(f"reserved (modelled, advisor.memory.overhead): {o['reserved_gb']:.2f} GB, range {lo:.2f}-{hi:.2f} GB; outside it "
          f"the CUDA context (+ NCCL) {o['cuda_context_gb']['gb']:.1f} GB")  # fmt: skip
    for name, t in o["terms"].items():
        value = f"{t['gb']:6.3f} GB" if "gb" in t else f"{t['relative'][0]:+.0%}/{t['relative'][1]:+.0%}"
        print(f"  {name:<28} {value:>9}  {t['mechanism']}")


def print_objective(d: dict) -> None:
    print(f"advisor estimate --simulate — {d['objective']}: peak {d['peak_allocated_gb']:.2f} GB allocated in the "
          f"{d['peak_phase']} phase (reference: {d['reference']})")  # fmt: skip
    for p in d["phases"]:
        print(f"  {p['name']:<12} {p['allocated_gb']:8.2f} GB")
    for n in d.get("notes", []):
        print(f"  {n}")
