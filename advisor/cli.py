"""``advisor``: recommend / explain / estimate / validate / models / gpus. Parse, check, dispatch.

Every bad input ends as one line on stderr naming the flag and the accepted form, exit code 2,
no traceback. Nothing here imports torch, transformers or pandas: the advisor answers instantly.
"""

from __future__ import annotations

import argparse
import json
import sys

from advisor.errors import EXIT_USAGE, AdvisorError, bad_choice
from advisor.stack_flags import add_stack, choice as _choice, stack_options

PROG = "advisor"


class _Parser(argparse.ArgumentParser):
    """argparse, but its errors become one-line AdvisorErrors instead of usage dumps."""

    def error(self, message: str):
        message = message.replace("argument ", "", 1) if message.startswith("argument ") else message
        if message.startswith("{recommend,") and "invalid choice: " in message:
            bad = message.split("invalid choice: ", 1)[1].split(" (", 1)[0].strip("'")
            raise bad_choice("command", bad, list(COMMANDS))
        raise AdvisorError(message)


def _int(flag: str, text, *, low: int = 0, example: str = "") -> int | None:
    if text is None:
        return None
    try:
        value = int(str(text).replace(",", "").replace("_", ""))
    except ValueError:
        value = None
    if value is None or value < low:
        raise AdvisorError(f"{flag}: '{text}' must be a whole number >= {low}{', e.g. ' + example if example else ''}")
    return value


def _warn(message: str | None) -> None:
    if message:
        print(f"{PROG}: warning: {message}", file=sys.stderr)


def _add_inputs(p: argparse.ArgumentParser) -> None:
    from advisor.decide.recipe import AUDITABILITY, CAPABILITIES

    p.add_argument("--gpu", required=True, help="budget: 24GB, 80GB, a GPU (A10G, 'RTX 4090', H100) or a count (8xH100, 2x24GB)")
    p.add_argument("--examples", help="labelled training examples you have (0 if none)")
    p.add_argument("--capability", default="instruction", help=f"what to teach: {', '.join(CAPABILITIES)} (default instruction)")
    p.add_argument("--auditability", default="standard", help=f"{', '.join(AUDITABILITY)} (default standard)")
    p.add_argument("--model", help="catalog name (advisor models), a size such as 7B, or a config.json path; default: the largest that fits")
    p.add_argument("--seq-len", help="longest example in tokens, prompt + answer (default 512)")
    p.add_argument("--verifiable-reward", action="store_true", help="answers can be checked automatically (tests, exact math)")
    p.add_argument("--preference-pairs", help="number of (chosen, rejected) pairs, for DPO")
    p.add_argument("--results", help="harness results directory to learn from (default results/, if present)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    add_stack(p)
    _add_hours(p)


def _add_hours(p: argparse.ArgumentParser) -> None:
    from advisor.decide.feasible import HOURS

    p.add_argument("--hours", default=str(HOURS), help=f"time budget for the whole run, judged at the estimate's high end (default {HOURS:g})")


def _hours(text) -> float:
    """--hours: a positive, finite number of hours."""
    try:
        value = float(str(text).strip())
    except ValueError:
        value = float("nan")
    if not (0 < value < float("inf")):
        raise AdvisorError(f"--hours: '{text}' must be a positive number of hours, e.g. --hours 24")
    return value


def build_parser() -> argparse.ArgumentParser:
    from advisor.facts import OPTIMIZERS
    from advisor.memory.rl import GRPO_DEFAULTS
    from advisor.memory.setup import METHODS, TARGETS

    parser = _Parser(prog=PROG, description="Which fine-tuning recipe fits your GPU and data, and why.")
    sub = parser.add_subparsers(dest="command", metavar="{recommend,explain,estimate,validate,models,gpus}", parser_class=_Parser)
    rec = sub.add_parser("recommend", help="the recipe for your GPU, data and goal")
    _add_inputs(rec)
    rec.add_argument("--emit", help="'harness': print only the `python -m harness …` command that validates the recipe")
    exp = sub.add_parser("explain", help="the same inputs; the decision path step by step")
    _add_inputs(exp)
    est = sub.add_parser("estimate", help="peak training memory of one configuration (GRPO/DPO: every phase); --gpu adds its step time")
    est.add_argument("--model", required=True, help="catalog name, a size such as 7B, or a config.json path")
    est.add_argument("--method", default="lora", help=f"{', '.join(METHODS)}, grpo, dpo (default lora)")
    est.add_argument("--inner", default="lora", help=f"grpo/dpo: what trains, {', '.join(METHODS)} (default lora)")
    est.add_argument("--num-generations", default=str(GRPO_DEFAULTS["num_generations"]), help="grpo: completions per prompt (default 8)")
    est.add_argument("--max-completion-len", default=str(GRPO_DEFAULTS["max_completion_len"]), help="grpo: tokens generated per completion (default 256)")
    est.add_argument("--beta", default=str(GRPO_DEFAULTS["beta"]), help="grpo: KL weight; 0 = no reference forward (default 0.04)")
    est.add_argument("--rank", default="16", help="LoRA rank (default 16)")
    est.add_argument("--targets", default="all-linear", help=f"{', '.join(TARGETS)} or module names joined by '+' (default all-linear)")
    est.add_argument("--batch-size", help="micro-batch per GPU: sequences (sft), pairs (dpo), completions (grpo; default --num-generations); default 1")
    est.add_argument("--seq-len", default="512", help="padded sequence length; grpo: the prompt (default 512)")
    add_stack(est)
    est.add_argument("--optimizer", default="adamw", help=f"{', '.join(OPTIMIZERS)} (default adamw)")
    est.add_argument("--gpus", default="1", help="data-parallel GPUs (default 1); see --sharding")
    est.add_argument("--sharding", default="full", help="with --gpus > 1: full (FSDP full shard = ZeRO-3), grad-op (shard-grad-op = ZeRO-2) or ddp (default full)")
    est.add_argument("--stack", default="hf", help="training software: hf (Trainer/TRL + peft), torchtune or litgpt (default hf)")
    est.add_argument("--attention", default="sdpa", help="sdpa, eager or flash (flash-attention-2 keeps K/V unexpanded; default sdpa)")
    est.add_argument("--grad-accum", default="1", help="gradient accumulation steps (default 1; > 1 keeps gradients alive)")
    est.add_argument("--device", default="cuda", help="cuda (allocated/reserved) or cpu (resident set, the harness's CPU runs)")
    est.add_argument("--gpu", help="a GPU (A10G, H100, 24GB): adds the time of one optimizer step")
    est.add_argument("--simulate", action="store_true", help="run the harness's own step on fake tensors (needs torch; slower, exact about that step)")
    est.add_argument("--trust-remote-code", action="store_true", help="--simulate: let transformers run a config.json's own modeling code")
    est.add_argument("--json", action="store_true", help="machine-readable output")
    val = sub.add_parser("validate", help="the memory model against published measurements and harness runs")
    val.add_argument("dir", nargs="?", help="harness results directory (default results/, if present)")
    val.add_argument("--fit", action="store_true", help="also grid-search the fitted constants and print them")
    val.add_argument("--simulate", action="store_true", help="also simulate every SmolLM2 record's step (needs torch; minutes) beside its measured RSS, price the published throughput rows' simulated steps, and score the published memory rows' simulated steps leave-one-source-out (from advisor/data/simulated_published.json)")
    val.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("models", "the model catalog"), ("gpus", "the GPU catalog")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _inputs(args):
    from advisor.decide.recipe import AUDITABILITY, CAPABILITIES, DEFAULT_SEQ_LEN, Inputs
    from advisor.inputs.catalog import check_seq_len, parse_gpu, resolve_model

    gpu = parse_gpu(args.gpu)
    examples = _int("--examples", args.examples, example="--examples 3000")
    pairs = _int("--preference-pairs", args.preference_pairs, example="--preference-pairs 20000")
    if examples is None and pairs is None:
        raise AdvisorError("--examples: required (how many labelled examples you have, e.g. --examples 3000; 0 if none)")
    seq = _int("--seq-len", args.seq_len, low=16, example="--seq-len 1024")
    if seq is not None and seq > 131_072 and not args.long_context:
        raise AdvisorError(f"--seq-len: '{args.seq_len}' is above 131072 tokens (add --long-context to plan training beyond that)")
    stack = stack_options(args)
    model = resolve_model(args.model) if args.model else None
    if model and seq:
        _warn(check_seq_len(model, seq, long_context=args.long_context))
    return Inputs(
        gpu=gpu, examples=examples, capability=_choice("--capability", args.capability, CAPABILITIES),
        auditability=_choice("--auditability", args.auditability, AUDITABILITY),
        model=model, seq_len=seq or DEFAULT_SEQ_LEN, seq_len_given=seq is not None,
        verifiable_reward=args.verifiable_reward, preference_pairs=pairs, stack=stack, hours=_hours(args.hours),
    )  # fmt: skip


def _recipe(args):
    from advisor.decide.procedure import recommend
    from advisor.inputs import harness_runs

    inp = _inputs(args)
    runs, warnings = harness_runs.load_runs(args.results or "results", must_exist=args.results is not None)
    rec = recommend(inp, runs)  # the rules, then one pass over the records' evidence (advisor.decide.evidence)
    rec.warnings.extend(warnings)
    return rec


def cmd_recommend(args) -> int:
    from advisor.render import recipe as render_recipe

    if args.emit is not None and args.emit != "harness":
        raise AdvisorError(f"--emit: '{args.emit}' is not supported; use --emit harness")
    rec = _recipe(args)
    if args.emit == "harness":
        print(render_recipe.harness_command(rec))
    elif args.json:
        print(json.dumps(render_recipe.recipe_dict(rec), indent=2))
    else:
        render_recipe.print_recipe(rec)
    return 0


def cmd_explain(args) -> int:
    from advisor.render import recipe as render_recipe

    rec = _recipe(args)
    if args.json:
        d = render_recipe.recipe_dict(rec)
        print(json.dumps({"steps": d["steps"], "recipe": d}, indent=2))
    else:
        render_recipe.print_explain(rec)
    return 0


def cmd_estimate(args) -> int:
    from advisor.facts import OPTIMIZERS
    from advisor.inputs.catalog import check_seq_len, parse_gpu, resolve_model
    from advisor.memory.setup import ATTENTION, DEVICES, SHARDING, SHARDING_ALIASES, STACKS, Setup

    # cheap flag checks first: a bad flag is reported before a config.json is read
    stack_opts = stack_options(args)
    sharding = str(args.sharding).strip().lower()
    sharding = _choice("--sharding", SHARDING_ALIASES.get(sharding, sharding), SHARDING)
    stack = _choice("--stack", args.stack, STACKS)
    attention = _choice("--attention", args.attention, ATTENTION)

    method, objective = _objective(args)
    batch = _int("--batch-size", args.batch_size, low=1, example="--batch-size 4")
    if batch is None:
        batch = objective.num_generations if objective.name == "grpo" else 1
    gpu = parse_gpu(args.gpu) if args.gpu else None
    if getattr(args, "simulate", False):  # a config.json the analytic path refuses is simulated still
        from advisor.simulate.cli import resolve_for_simulation

        model = resolve_for_simulation(args.model)
    else:
        model = resolve_model(args.model)
    seq_len = _int("--seq-len", args.seq_len, low=1, example="--seq-len 1024")
    _warn(check_seq_len(model, seq_len, long_context=args.long_context))
    setup = Setup(
        arch=model.arch, method=method, rank=_int("--rank", args.rank, low=1, example="--rank 16"),
        targets=args.targets, batch_size=batch,
        seq_len=seq_len, optimizer=_choice("--optimizer", args.optimizer, OPTIMIZERS),
        gpus=_int("--gpus", args.gpus, low=1, example="--gpus 8"), grad_accum=_int("--grad-accum", args.grad_accum, low=1, example="--grad-accum 4"),
        device=_choice("--device", args.device, DEVICES), sharding=sharding, stack=stack, attention=attention,
        **stack_opts.setup_kwargs(False),
    )  # fmt: skip
    if getattr(args, "simulate", False):
        from advisor.simulate.cli import run_simulation

        return run_simulation(args, model, setup, objective)
    return _show_estimate(args, model, setup, objective, gpu)


def _objective(args):
    """``--method`` as (what trains, the objective): grpo/dpo train their ``--inner`` method."""
    from advisor.memory.rl import Objective
    from advisor.memory.setup import METHODS

    method = _choice("--method", args.method, METHODS + ("grpo", "dpo"))
    if method not in ("grpo", "dpo"):
        return method, Objective("sft")
    try:
        beta = float(args.beta)
    except ValueError:
        raise AdvisorError(f"--beta: '{args.beta}' must be a number >= 0, e.g. --beta 0.04") from None
    objective = Objective(method, _int("--num-generations", args.num_generations, low=2, example="--num-generations 8"),
                          _int("--max-completion-len", args.max_completion_len, low=1, example="--max-completion-len 256"), beta)  # fmt: skip
    return _choice("--inner", args.inner, METHODS), objective


def _show_estimate(args, model, setup, objective, gpu) -> int:
    """The analytic estimate (a whole GRPO/DPO setup, or one SFT step), with the step time on ``gpu``."""
    from advisor.memory.estimate import estimate
    from advisor.render import estimate as render_estimate
    from advisor.render import speed as render_speed
    from advisor.speed.step import on_gpu

    step = on_gpu(setup, objective, gpu)
    if objective.name != "sft":
        from advisor.memory.rl import estimate_setup

        whole = estimate_setup(setup, objective)
        if args.json:
            print(json.dumps(render_speed.setup_estimate_dict(model, whole, step), indent=2))
        else:
            render_speed.print_setup_estimate(model, whole, step)
        return 0
    b = estimate(setup)
    if args.json:
        d = render_estimate.estimate_dict(model, setup, b)
        if gpu:
            d["step_time"] = render_speed.step_dict(step)
        print(json.dumps(d, indent=2))
    else:
        render_estimate.print_estimate(model, setup, b)
        render_speed.print_step(step)
    return 0


def cmd_validate(args) -> int:
    from advisor.inputs import harness_runs
    from advisor.render import validate as render_validate
    from advisor.validate import memory as validate_memory

    directory = args.dir or "results"
    runs, warnings = harness_runs.load_runs(directory, must_exist=args.dir is not None, flag="validate DIR")
    published, sources = validate_memory.validate_loso()
    harness = validate_memory.validate_runs(runs)
    fitted = None
    if args.fit:
        fitted = {"cuda": validate_memory.fit(), "cpu": validate_memory.fit_cpu(runs)}
    report = render_validate.validate_dict(directory, published, harness, warnings, fitted, sources, validate_memory.device_rows())
    from advisor.render import speed as render_speed
    from advisor.validate import speed as validate_speed

    report["time"] = render_speed.time_dict(validate_speed.published_time_rows(), validate_speed.harness_time_rows(runs))
    sim_rows = None
    if getattr(args, "simulate", False):
        from advisor.simulate.validate_sim import simulated_runs

        sim_rows = report["simulated_runs"] = simulated_runs(runs)
        from advisor.simulate import published as sim_published, validate_time_sim

        report["time_simulated"] = validate_time_sim.as_dict(validate_time_sim.simulated_time_rows(), validate_speed.published_time_rows())
        report["memory_simulated"] = sim_published.loso()  # from the committed cache: seconds
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render_validate.print_validate(report)
        render_speed.print_time(report["time"], directory)
        if sim_rows is not None:
            from advisor.simulate.validate_sim import print_rows

            print_rows(sim_rows)
            validate_time_sim.print_report(report["time_simulated"])
            sim_published.print_report(report["memory_simulated"])
    return 0


def cmd_catalog(args) -> int:
    from advisor.render import estimate as render_estimate

    rows = render_estimate.catalog_rows(args.command)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        render_estimate.print_catalog(args.command, rows)
    return 0


COMMANDS = {"recommend": cmd_recommend, "explain": cmd_explain, "estimate": cmd_estimate, "validate": cmd_validate,
            "models": cmd_catalog, "gpus": cmd_catalog}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return EXIT_USAGE
        return COMMANDS[args.command](args)
    except AdvisorError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except SystemExit as e:  # --help
        return e.code if isinstance(e.code, int) else 0
    except BrokenPipeError:  # `advisor … | head`
        return 0
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
