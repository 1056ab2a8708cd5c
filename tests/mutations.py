"""Break the code on purpose and check that the fast tests catch it.

    .venv/bin/python tests/mutations.py              # every break (~5-10 min on 2 cores)
    .venv/bin/python tests/mutations.py fsdp qlora   # only breaks whose name contains a word

Each break is a text replacement in one file, applied to a temporary copy of the committed tree
(``git archive HEAD``; uncommitted edits are not seen), followed by the fast tests that should
catch it, run in that copy. A break "is caught" when at least one of its tests fails (all of them
are listed); the exit
code is 1 if any break got through. Every replacement must match exactly once, so a refactor that
moves the code makes the script fail loudly instead of testing nothing.

The breaks are issue 18's table (each passed the suite before) plus the shipped forgetting sign.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Break:
    name: str
    what: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]


BREAKS = (
    Break("qlora-fix-removed", "the QLoRA 'keep the 4-bit gradient after an eval forward' fix removed",
          "harness/models.py",
          "            module.support_avx512bf16_for_cpu = False\n            weight = module.weight\n"
          "            if getattr(weight.quant_state, \"packing_format_for_cpu\", False):",
          "            weight = module.weight\n            if False:",
          ("tests/test_methods.py::test_qlora_keeps_its_gradient_after_an_eval_forward",)),
    Break("flops-adapters-6N", "the FLOPs formula charges adapter methods 6N (weight grads of the frozen base)",
          "advisor/facts.py", "    base = 6 * n if trains_base else 4 * n", "    base = 6 * n",
          ("tests/test_measure.py -k flops",)),
    Break("flops-no-attention", "the FLOPs formula drops the attention term",
          "advisor/facts.py", "    attn = 12 * arch[\"num_hidden_layers\"] * seq_len * arch[\"hidden_size\"]", "    attn = 0",
          ("tests/test_measure.py -k flops",)),
    Break("warmup-counted", "warm-up steps counted in tokens/s",
          "harness/measure.py", "        skip = min(self.skip, n - 1)", "        skip = 0",
          ("tests/test_measure.py -k stepclock",)),
    Break("adamw8bit-is-adamw", "adamw8bit swapped for plain AdamW",
          "harness/train.py", "    \"adamw8bit\": \"adamw_bnb_8bit\",", "    \"adamw8bit\": \"adamw_torch\",",
          ("tests/test_methods.py -k 8bit",)),
    Break("budget-absolute-rss", "the budget watchdog reads absolute RSS instead of growth",
          "harness/measure.py", "        return (_rss_bytes() - self.baseline) / GB", "        return _rss_bytes() / GB",
          ("tests/test_measure.py -k budget",)),
    Break("fsdp-no-load-back", "the FSDP parent never loads the trained weights back",
          "harness/methods/fsdp.py", "            model.load_state_dict(trained, strict=False)", "            pass",
          ("tests/test_methods.py -k fsdp_learns",)),
    Break("tuned-probes-are-base", "the tuned model's probes replaced by the base's",
          "harness/run.py",
          "            tuned_probes = evaluate.probe_scores(model, loaded.tokenizer, probe_names, limit=spec.eval.probe_limit, batch_size=spec.eval.batch_size)",
          "            tuned_probes = base_probes",
          ("tests/test_eval.py -k compares_the_tuned",)),
    Break("regress-forgetting-sign", "regress reads forgetting with the wrong sign (the shipped defect)",
          "harness/regress.py", "(oriented_drop(delta, hib), ", "(-oriented_drop(delta, hib), ",
          ("tests/test_regress.py -k forgetting", "tests/test_contracts.py -k forgetting")),
    Break("report-forgetting-sign", "report reads forgetting with the wrong sign (the shipped defect)",
          "harness/analysis.py", '"acc", "accuracy points", 100 * (b - t)', '"acc", "accuracy points", 100 * (t - b)',
          ("tests/test_contracts.py -k report", "tests/test_report.py -k forgetting")),
    Break("peak-flops-first-measurement", "the CPU peak FLOPs trusts its first (possibly busy) measurement",
          "harness/measure.py", "    flops = max(measure(dtype), float(cached.get(key) or 0.0))",
          "    flops = float(cached.get(key) or measure(dtype))",
          ("tests/test_measure.py -k peak_flops",)),
    Break("regress-ignores-data", "regress judges task scores over different test examples",
          "harness/regress.py", "        data_changed = _data_changed(both.loc[b.index], both.loc[c.index])",
          "        data_changed = ''",
          ("tests/test_regress.py -k other_examples",)),
    # issue 24: the habits people bring
    Break("progress-wraps-in-a-pipe", "off a terminal, rich wraps at 80 columns again",
          "harness/console.py", "    return Console(stderr=stderr, soft_wrap=True, width=PIPE_WIDTH)", "    return console",
          ("tests/test_progress_lines.py -k piped_run",)),
    Break("progress-every-step", "plain progress prints every step whatever log.every says",
          "harness/plain_progress.py", "int(self.done) // every > int(self.printed_step) // every",
          "int(self.done) > int(self.printed_step)", ("tests/test_progress_lines.py::test_the_default_is_about_twenty_lines_a_phase_and_one_a_minute",)),
    Break("tracker-drops-steps", "a tracker gets no per-step metrics",
          "harness/trackers/__init__.py", "        if metrics and self.step > 0:", "        if metrics and self.step < 0:",
          ("tests/test_trackers.py -k live_run",)),
    Break("tensorboard-no-final", "TensorBoard gets no final figures",
          "harness/trackers/tensorboard_tracker.py", '            self.writer.add_scalar(f"final/{key}", value, 0)',
          "            pass", ("tests/test_trackers.py::test_each_tracker_keeps_params_steps_final_figures_and_the_record[tensorboard]",)),
    Break("hub-named-hub", "hub models are all called 'hub' again",
          "harness/model_names.py", "    if not name_or_path:\n        return name", "    if True:\n        return name",
          ("tests/test_report_fit.py -k hub",)),
    Break("regress-writes-into-candidate", "regress writes its verdict into the judged folder",
          "harness/regress.py", 'Path("results/regress") / f"{stamp}.json"', 'candidate / "regress.json"',
          ("tests/test_regress.py -k beside",)),
    Break("labels-uncut", "a long differing path is printed whole in labels",
          "harness/label_fit.py", "    for least, bare in ((False, False), (True, False), (True, True)):",
          "    return [' '.join([m] + [f'{k}={v[i]}' for k, v in columns.items() if v[i] is not None]) for i, m in enumerate(methods)]\n"
          "    for least, bare in ((False, False), (True, False), (True, True)):",
          ("tests/test_report_fit.py",)),
    # issue 25: search
    Break("search-sampler-seeded-once", "the search sampler is seeded once per process (a re-run replays its proposals)",
          "harness/search/study.py",
          "    study.sampler = make_sampler(search, None if search.seed is None else search.seed + trial.number)\n",
          "", ("tests/test_search.py -k seed",)),
    Break("search-oom-is-a-failure", "an OOM trial is told as FAIL instead of infeasible",
          "harness/search/space.py", 'INFEASIBLE = ("oom", "timeout")', 'INFEASIBLE = ("timeout",)',
          ("tests/test_search.py -k oom",)),
    Break("search-no-retry", "a trial whose runner was killed is not queued again with its parameters",
          "harness/search/study.py", "heartbeat_stale_trial_callback=RetryFailedTrialCallback())",
          "heartbeat_stale_trial_callback=None)", ("tests/test_search.py -k killed",)),
)


def copy_tree(dest: Path) -> None:
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)


def apply(root: Path, b: Break) -> None:
    path = root / b.file
    text = path.read_text()
    if text.count(b.old) != 1:
        raise SystemExit(f"mutations: break '{b.name}': the code to break occurs {text.count(b.old)}× in {b.file} "
                         "(expected once); update tests/mutations.py")
    path.write_text(text.replace(b.old, b.new))


def run_tests(root: Path, spec: str) -> list[str]:
    """The tests that failed (empty: the break got through)."""
    args = spec.split()
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONWARNINGS": "ignore"}
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-rf", "-p", "no:cacheprovider", *args], cwd=root,
                         capture_output=True, text=True, env=env, timeout=1800)
    if res.returncode not in (0, 1):
        raise SystemExit(f"mutations: pytest {spec} exited {res.returncode} (not a test result):\n{res.stdout[-2000:]}{res.stderr[-2000:]}")
    return [ln.removeprefix("FAILED ").split(" - ")[0] for ln in res.stdout.splitlines() if ln.startswith("FAILED ")]


def main(argv: list[str]) -> int:
    chosen = [b for b in BREAKS if not argv or any(w in b.name for w in argv)]
    rows, missed = [], 0
    for b in chosen:
        with tempfile.TemporaryDirectory(prefix=f"tunebench-mut-{b.name}-") as tmp:
            root = Path(tmp)
            copy_tree(root)
            (root / ".venv").symlink_to(REPO / ".venv")
            apply(root, b)
            t = time.perf_counter()
            caught_by = [node for spec in b.tests for node in run_tests(root, spec)]
            missed += not caught_by
            rows.append((b.what, ", ".join(caught_by) or "NOT CAUGHT", time.perf_counter() - t))
            print(f"{'caught' if caught_by else 'MISSED'}  {b.name}: {rows[-1][1]}  [{rows[-1][2]:.0f} s]", flush=True)
    print("\n| break | caught by |\n|---|---|")
    for what, by, _ in rows:
        print(f"| {what} | {by} |")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
