"""``harness eval RUN --data FILE.jsonl``: score a saved run on data it never saw.

RUN is a run id (or a unique prefix), a record path, or an artifact directory. The model is the
run's base + its saved adapter (or its saved model); the scorer is the run's task scorer unless
``--metric`` picks another. The result is printed and written as an evaluation record to
``<results_dir>/evals/<run_id>-<key>.json`` — a subdirectory, because every top-level ``*.json``
in a results directory is a run record to the loaders.

    harness eval lora-smollm2-135m-tickets-1a2b3c4d5e --data harness/data/tickets_handwritten.jsonl
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from harness.errors import UserError, run_cli, unknown

EVALS_SUBDIR = "evals"
TASK_SCORER = "task"


def parser() -> argparse.ArgumentParser:
    from harness.tasks.custom import METRICS

    p = argparse.ArgumentParser(prog="harness eval", description="Score a saved run on a {\"messages\": [...]} JSONL file.")
    p.add_argument("run", help="run id (or unique prefix), record path, or artifacts/<run_id> directory")
    p.add_argument("--data", required=True, help="JSONL, one {\"messages\": [..., {\"role\": \"assistant\", ...}]} per line")
    p.add_argument("--results", default="results/runs", help="where run records live (default: results/runs)")
    p.add_argument(
        "--metric",
        default=TASK_SCORER,
        help=f"'{TASK_SCORER}' (default: the run's own task scorer, e.g. the tickets label check) or one of {', '.join(METRICS)}",
    )
    p.add_argument("--probes", default="", help="forgetting probes to re-run, comma-separated (e.g. general_mc,general_ppl)")
    p.add_argument("--probe-limit", type=int, default=None, help="examples per probe (default: the probe's own)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--json", action="store_true", help="print the evaluation record as JSON on stdout")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the model's own Python code (only from here: a run's manifest or record cannot switch it on)")
    return p


def scorer_for(manifest: dict, metric: str, data: str):
    """(task whose ``score`` and ``max_new_tokens`` are used, examples, scorer name)."""
    from harness.tasks import get_task
    from harness.tasks.custom import METRICS, CustomTask, read_chat_jsonl

    task_spec = manifest["config"]["task"]
    if metric == TASK_SCORER and task_spec["name"] != "custom":
        from harness.spec import TaskSpec

        examples = read_chat_jsonl(data)  # file:line errors for a bad line
        return get_task(TaskSpec(**task_spec)), examples, task_spec["name"]
    if metric == TASK_SCORER:
        metric = task_spec.get("metric") or "exact_match"
    if metric not in METRICS:
        raise unknown("--metric", metric, [TASK_SCORER, *METRICS])
    # CustomTask reads and checks the file and sizes the generation budget from its answers.
    task = CustomTask(train_file=data, eval_file=data, metric=metric)
    return task, task.splits()["test"], metric


def forgetting_probes(located, model, tok, names: tuple[str, ...], *, limit: int | None, batch_size: int,
                      trust_remote_code: bool = False) -> dict:
    """``metrics.forgetting``-shaped entries for the trained model, through the eval engineer's
    probe API (``evaluate.probe_scores`` / ``base_probe_scores``; fields in ``harness/forgetting.py``).

    The base side comes from the same cache the run used; when it is missing, an adapter run
    scores the base with its adapter disabled (no second copy), a saved model loads its base.
    """
    import contextlib

    from harness import artifacts, evaluate, forgetting, models
    from harness.measure import device_of

    spec = artifacts.spec_of(located.manifest, trust_remote_code=trust_remote_code)
    device = device_of()
    load = {"dtype": str(models.resolve_dtype(spec.train.dtype, device)), "quantize": spec.method.quantize, "device": device}
    identity = located.manifest.get("base")
    tuned = evaluate.probe_scores(model, tok, names, limit=limit, batch_size=batch_size)
    if hasattr(model, "disable_adapter"):
        base_model, ctx = model, model.disable_adapter()
    else:
        loaded = artifacts.load_base(located.manifest, device, trust_remote_code=trust_remote_code)
        base_model, ctx = loaded.model, contextlib.nullcontext()
    with ctx:
        base, _ = evaluate.base_probe_scores(base_model, tok, names, limit=limit, batch_size=batch_size, identity=identity, load=load)
    return forgetting.entries(base, tuned)


def eval_key(data_sha: str, metric: str, limit: int | None) -> str:
    return hashlib.sha256(json.dumps([data_sha, metric, limit]).encode()).hexdigest()[:12]


def evaluate_run(run: str, data: str, *, results: str = "results/runs", metric: str = TASK_SCORER,
                 probes: tuple[str, ...] = (), probe_limit: int | None = None, limit: int | None = None,
                 batch_size: int = 16, trust_remote_code: bool = False, progress=None) -> dict:
    """Load, score, write the evaluation record; returns it (``path`` says where it went).
    ``progress``: where the phases (eval, probes) go (``harness/plain_progress.py``)."""
    from harness import artifacts, evaluate
    from harness.atomic import write_json
    from harness.plain_progress import phase
    from harness.provenance import now, provenance

    if batch_size < 1 or (limit is not None and limit < 1):
        raise UserError("--batch-size and --limit must be >= 1")
    located = artifacts.locate(run, results)
    task, examples, scorer = scorer_for(located.manifest, metric, data)
    examples = examples[:limit] if limit else examples
    if probes:
        evaluate.check_probes(probes)  # unknown or offline-unavailable probes fail before any loading
    started = now()

    model, tok = artifacts.load_trained(located, trust_remote_code=trust_remote_code)  # from the command line only
    with phase(progress, "eval", len(examples)):
        result, _ = evaluate.score(model, tok, task, examples, batch_size=batch_size)
    data_sha = hashlib.sha256(Path(data).expanduser().read_bytes()).hexdigest()
    m = located.record.get("metrics") or {}
    out = {
        "schema_version": 1,
        "kind": "evaluation",
        "run_id": located.run_id,
        "artifact": {"kind": located.manifest["kind"], "path": str(located.directory)},
        "base": located.manifest.get("base"),
        "data": {"path": str(Path(data).expanduser().resolve()), "sha256": data_sha, "n": len(examples)},
        "scorer": scorer,
        "max_new_tokens": task.max_new_tokens,
        "score": result.to_dict(),
        "run_task_score": {"mean": m.get("task_score"), "stderr": m.get("task_score_stderr"), "n": m.get("task_eval_n")},
        "provenance": {**provenance(started), "finished_at": None},
    }
    if probes:
        with phase(progress, "probes", len(probes)):
            out["forgetting"] = forgetting_probes(located, model, tok, probes, limit=probe_limit, batch_size=batch_size,
                                                trust_remote_code=trust_remote_code)
    out["provenance"]["finished_at"] = now()
    path = located.results_dir / EVALS_SUBDIR / f"{located.run_id}-{eval_key(data_sha, scorer, limit)}.json"
    write_json(path, out)
    out["path"] = str(path)
    return out


def _fmt(score: dict) -> str:
    if score.get("mean") is None:
        return "–"
    se = score.get("stderr")
    return f"{score['mean']:.3f} ± {se:.3f} (n={score['n']})" if se is not None else f"{score['mean']:.3f} (n={score['n']})"


def _main(argv: list[str]) -> int:
    from harness.console import quiet_libraries
    from harness.plain_progress import PlainProgress, plain_wanted

    args = parser().parse_args(argv)
    quiet_libraries()
    probes = tuple(p.strip() for p in args.probes.split(",") if p.strip())
    # Off a terminal, a line per phase and one a minute (with --json, on stderr: stdout is the JSON).
    stream = sys.stderr if args.json else sys.stdout
    plain = PlainProgress(write=lambda line: print(line, file=stream, flush=True)).start_heartbeat() if plain_wanted(None) else None
    try:
        out = evaluate_run(args.run, args.data, results=args.results, metric=args.metric, probes=probes,
                           probe_limit=args.probe_limit, limit=args.limit, batch_size=args.batch_size,
                           trust_remote_code=args.trust_remote_code, progress=plain)
    finally:
        if plain is not None:
            plain.close()
    if args.json:
        json.dump(out, sys.stdout, indent=2, default=str)
        print()
        return 0
    print(f"{out['run_id']} on {Path(args.data).name} (scorer: {out['scorer']})")
    print(f"  accuracy           {_fmt(out['score'])}")
    print(f"  run's own test set {_fmt(out['run_task_score'])}")
    for name, f in (out.get("forgetting") or {}).items():
        flag = "  (significant)" if f["significant"] else ""
        print(f"  {name:<18} base {f['base']:.4g} → tuned {f['tuned']:.4g} (Δ {f['delta']:+.4g} ± {f['stderr']:.2g}, {f['metric']}){flag}")
    print(f"  → {out['path']}")
    return 0


def main(argv: list[str]) -> int:
    return run_cli("harness eval", lambda: _main(argv))
