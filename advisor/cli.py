"""``advisor``: recommend / explain / estimate / validate / models / gpus. Parse, check, dispatch.

Every bad input ends as one line on stderr naming the flag and the accepted form, exit code 2,
no traceback. Nothing here imports torch, transformers or pandas: the advisor answers instantly.
"""

from __future__ import annotations

import argparse
import json
import sys

from advisor.errors import EXIT_USAGE, AdvisorError, bad_choice

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


def _choice(flag: str, text, choices) -> str:
    value = str(text).strip().lower()
    if value not in choices:
        raise bad_choice(flag, text, choices)
    return value


def _add_inputs(p: argparse.ArgumentParser) -> None:
    from advisor.rules import AUDITABILITY, CAPABILITIES

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


def build_parser() -> argparse.ArgumentParser:
    from advisor.memory import METHODS, OPTIMIZERS, PRECISIONS, TARGETS

    parser = _Parser(prog=PROG, description="Which fine-tuning recipe fits your GPU and data, and why.")
    sub = parser.add_subparsers(dest="command", metavar="{recommend,explain,estimate,validate,models,gpus}", parser_class=_Parser)
    rec = sub.add_parser("recommend", help="the recipe for your GPU, data and goal")
    _add_inputs(rec)
    rec.add_argument("--emit", help="'harness': print only the `python -m harness …` command that validates the recipe")
    exp = sub.add_parser("explain", help="the same inputs; the decision path step by step")
    _add_inputs(exp)
    est = sub.add_parser("estimate", help="peak training memory of one configuration")
    est.add_argument("--model", required=True, help="catalog name, a size such as 7B, or a config.json path")
    est.add_argument("--method", default="lora", help=f"{', '.join(METHODS)} (default lora)")
    est.add_argument("--rank", default="16", help="LoRA rank (default 16)")
    est.add_argument("--targets", default="all-linear", help=f"{', '.join(TARGETS)} or module names joined by '+' (default all-linear)")
    est.add_argument("--batch-size", default="1", help="micro-batch per GPU (default 1)")
    est.add_argument("--seq-len", default="512", help="padded sequence length (default 512)")
    est.add_argument("--grad-checkpointing", action=argparse.BooleanOptionalAction, default=False, help="recompute activations in backward")
    est.add_argument("--precision", default="bf16", help=f"{', '.join(PRECISIONS)} (default bf16)")
    est.add_argument("--optimizer", default="adamw", help=f"{', '.join(OPTIMIZERS)} (default adamw)")
    est.add_argument("--gpus", default="1", help="FSDP: shard over this many GPUs (default 1)")
    est.add_argument("--grad-accum", default="1", help="gradient accumulation steps (default 1; > 1 keeps gradients alive)")
    est.add_argument("--device", default="cuda", help="cuda (allocated/reserved) or cpu (resident set, the harness's CPU runs)")
    est.add_argument("--json", action="store_true", help="machine-readable output")
    val = sub.add_parser("validate", help="the memory model against published measurements and harness runs")
    val.add_argument("dir", nargs="?", help="harness results directory (default results/, if present)")
    val.add_argument("--fit", action="store_true", help="also grid-search the fitted constants and print them")
    val.add_argument("--json", action="store_true", help="machine-readable output")
    for name, text in (("models", "the model catalog"), ("gpus", "the GPU catalog")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def _inputs(args):
    from advisor.catalog import parse_gpu, resolve_model
    from advisor.rules import AUDITABILITY, CAPABILITIES, DEFAULT_SEQ_LEN, Inputs

    gpu = parse_gpu(args.gpu)
    examples = _int("--examples", args.examples, example="--examples 3000")
    pairs = _int("--preference-pairs", args.preference_pairs, example="--preference-pairs 20000")
    if examples is None and pairs is None:
        raise AdvisorError("--examples: required (how many labelled examples you have, e.g. --examples 3000; 0 if none)")
    seq = _int("--seq-len", args.seq_len, low=16, example="--seq-len 1024")
    if seq is not None and seq > 131_072:
        raise AdvisorError(f"--seq-len: '{args.seq_len}' is above 131072 tokens")
    return Inputs(
        gpu=gpu, examples=examples, capability=_choice("--capability", args.capability, CAPABILITIES),
        auditability=_choice("--auditability", args.auditability, AUDITABILITY),
        model=resolve_model(args.model) if args.model else None, seq_len=seq or DEFAULT_SEQ_LEN,
        seq_len_given=seq is not None, verifiable_reward=args.verifiable_reward, preference_pairs=pairs,
    )  # fmt: skip


def _recipe(args):
    from advisor import evidence
    from advisor.rules import recommend

    inp = _inputs(args)
    runs, warnings = evidence.load_runs(args.results or "results", must_exist=args.results is not None)
    rec = recommend(inp, runs)
    from advisor.measured import correct

    correct(rec, runs)  # the user's lr_rank / data_scaling records, if any, correct method, rank and lr
    rec.warnings.extend(warnings)
    return rec


def cmd_recommend(args) -> int:
    from advisor import render

    if args.emit is not None and args.emit != "harness":
        raise AdvisorError(f"--emit: '{args.emit}' is not supported; use --emit harness")
    rec = _recipe(args)
    if args.emit == "harness":
        print(render.harness_command(rec))
    elif args.json:
        print(json.dumps(render.recipe_dict(rec), indent=2))
    else:
        render.print_recipe(rec)
    return 0


def cmd_explain(args) -> int:
    from advisor import render

    rec = _recipe(args)
    if args.json:
        d = render.recipe_dict(rec)
        print(json.dumps({"steps": d["steps"], "recipe": d}, indent=2))
    else:
        render.print_explain(rec)
    return 0


def cmd_estimate(args) -> int:
    from advisor import render
    from advisor.catalog import resolve_model
    from advisor.memory import DEVICES, METHODS, OPTIMIZERS, PRECISIONS, Setup, estimate

    model = resolve_model(args.model)
    setup = Setup(
        arch=model.arch, method=_choice("--method", args.method, METHODS), rank=_int("--rank", args.rank, low=1, example="--rank 16"),
        targets=args.targets, batch_size=_int("--batch-size", args.batch_size, low=1, example="--batch-size 4"),
        seq_len=_int("--seq-len", args.seq_len, low=1, example="--seq-len 1024"), grad_checkpointing=args.grad_checkpointing,
        precision=_choice("--precision", args.precision, PRECISIONS), optimizer=_choice("--optimizer", args.optimizer, OPTIMIZERS),
        gpus=_int("--gpus", args.gpus, low=1, example="--gpus 8"), grad_accum=_int("--grad-accum", args.grad_accum, low=1, example="--grad-accum 4"),
        device=_choice("--device", args.device, DEVICES),
    )  # fmt: skip
    b = estimate(setup)
    if args.json:
        print(json.dumps(render.estimate_dict(model, setup, b), indent=2))
    else:
        render.print_estimate(model, setup, b)
    return 0


def cmd_validate(args) -> int:
    from advisor import evidence, render, validate

    directory = args.dir or "results"
    runs, warnings = evidence.load_runs(directory, must_exist=args.dir is not None, flag="validate DIR")
    published = validate.validate_published()
    harness = validate.validate_runs(runs)
    fitted = None
    if args.fit:
        fitted = {"cuda": validate.fit(), "cpu": validate.fit_cpu(runs)}
    report = render.validate_dict(directory, published, harness, warnings, fitted)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        render.print_validate(report)
    return 0


def cmd_catalog(args) -> int:
    from advisor import render

    rows = render.catalog_rows(args.command)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        render.print_catalog(args.command, rows)
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
