#!/usr/bin/env bash
# Mutation testing with mutmut 3 over the modules whose numbers users act on (docs/mutation.md).
#
#   pip install -e '.[mutation]'
#   scripts/mutation.sh                 # every module below, one after the other
#   scripts/mutation.sh regress schema  # some of them
#   JOBS=4 scripts/mutation.sh measure  # more mutmut workers (default 1: a shared machine)
#   SAMPLE=10 scripts/mutation.sh schema # a systematic 1-in-10 sample of the mutants (also 2, 5)
#   BEFORE=1 scripts/mutation.sh schema  # without the tests/test_*_mutants.py files: the score before them
#   MUTANT_NAMES="harness.schema.x_errors__mutmut_7 …" scripts/mutation.sh schema  # rerun just these
#
# Each module runs in its own scratch copy of the working tree ($MUTATION_DIR/<module>, default
# /tmp/tunebench-mutation) with a generated setup.cfg [mutmut] section: mutmut reads one config
# per directory, and each module is scored against only the fast-tier test files that test it, so
# a mutant costs a second, not a training run. The copy's mutants/ keeps mutmut's cache: a rerun
# after a test change re-checks only what changed. Prints "module killed/total (score)" per
# module and lists the survivors (`mutmut show <name>` in the copy prints a survivor's diff).
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
WORK="${MUTATION_DIR:-/tmp/tunebench-mutation}"
JOBS="${JOBS:-1}"
# SAMPLE=5 (or 10) scores a systematic 1-in-5 (1-in-10) sample of each module's mutants: those whose
# number ends in 0 or 5 (in 0). Default 1: every mutant.
SAMPLE="${SAMPLE:-1}"
case "$SAMPLE" in 1) tail_glob="";; 2) tail_glob="[02468]";; 5) tail_glob="[05]";; 10) tail_glob="0";;
  *) echo "mutation.sh: SAMPLE must be 1, 2, 5 or 10 (got '$SAMPLE')" >&2; exit 2;; esac
PY="${PYTHON:-python}"

# name | file(s) to mutate | functions (mutmut name globs; "*" = all) | tests (files or node ids)
# The tests are the module's fast-tier tests that run in-process without training a model: a test
# that needs the session's real tiny run (conftest `run_tiny`, `measured`) would train it again for
# every mutant (mutmut runs each mutant in a fresh pytest session).
MODULES=(
  "regress|harness/regress.py|log_ratio_ci _summary _show judge_ratio judge_equivalence _probe_table _status_row _data_changed compare provenance_diff summarize cpu_concurrency refuse_concurrent_mix regress _load|tests/test_regress.py tests/test_regress_mutants.py"
  "sweep_plan|harness/sweep/plan.py|*|tests/test_sweeps.py::test_every_preset_composes_and_each_point_validates tests/test_sweeps.py::test_rank_ablation_is_lora_and_dora_at_seven_ranks_with_alpha_2r tests/test_sweeps.py::test_override_quotes_what_hydra_would_misread tests/test_sweeps.py::test_a_second_runner_of_the_same_sweep_is_refused tests/test_sweep_plan_mutants.py"
  "schema|harness/schema.py|*|tests/test_record.py::test_the_schema_uses_only_what_the_validator_checks tests/test_record.py::test_the_schema_declares_every_config_field tests/test_record.py::test_a_version_1_record_still_loads_and_reports tests/test_record.py::test_every_committed_record_loads_with_its_architecture tests/test_schema_mutants.py"
  "measure|harness/measure.py|*|tests/test_measure.py::test_stepclock_excludes_exactly_the_warmup_steps tests/test_measure.py::test_stepclock_keeps_one_measured_step_when_the_run_is_short tests/test_measure.py::test_cpu_peak_flops_keeps_the_best_measurement_so_a_busy_moment_cannot_poison_it tests/test_measure_mutants.py"
  "train_batching|harness/train.py|collate batch_order _grouped padding_fraction total_steps training_batches|tests/test_learning.py::test_length_grouping_cuts_padding_and_keeps_every_row_once_per_epoch tests/test_train_batching_mutants.py"
  "analysis|harness/analysis.py harness/claims.py|*|tests/test_report.py::test_a_run_that_collapses_a_probe_is_flagged_never_least_forgetting tests/test_report.py::test_least_forgetting_is_nobody_when_every_run_dropped tests/test_report.py::test_labels_show_only_what_differs_in_canonical_form tests/test_report.py::test_pareto_mask_uses_declared_directions tests/test_report_fit.py::test_two_hub_models_in_one_report_are_labelled_by_their_names tests/test_analysis_mutants.py"
  "advisor_estimate|advisor/memory/estimate.py|*|tests/advisor/test_advisor_memory.py tests/advisor/test_advisor_stack.py tests/advisor/test_advisor_estimate_mutants.py"
  "advisor_activations|advisor/memory/activations.py|*|tests/advisor/test_advisor_memory.py tests/advisor/test_advisor_stack.py tests/advisor/test_advisor_activations.py"
  "advisor_procedure|advisor/decide/procedure.py|*|tests/advisor/test_advisor_rules.py tests/advisor/test_advisor_budget.py tests/advisor/test_advisor_procedure_mutants.py"
  "advisor_evidence|advisor/decide/evidence.py|*|tests/advisor/test_advisor_rules.py tests/advisor/test_advisor_forgetting.py tests/test_learning.py::test_advisor_takes_rank_and_lr_from_lr_rank_records tests/test_learning.py::test_advisor_switches_method_on_data_scaling_records tests/advisor/test_advisor_evidence_mutants.py"
)

# Tests left out of every mutant run: each spawns a whole harness process (seconds) to check what a
# faster test in the same file already checks in-process (exit codes, the suite's own settings).
DESELECT=(
  "tests/test_regress.py::test_harness_regress_exits_1_when_forgetting_got_worse"
)

want=("$@")
selected() {
  [ ${#want[@]} -eq 0 ] && return 0
  local w; for w in "${want[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1
}
for w in "${want[@]}"; do
  printf '%s\n' "${MODULES[@]}" | cut -d'|' -f1 | grep -qx "$w" \
    || { echo "mutation.sh: unknown module '$w' (known: $(printf '%s\n' "${MODULES[@]}" | cut -d'|' -f1 | tr '\n' ' '))" >&2; exit 2; }
done
"$PY" -c "import mutmut" 2>/dev/null || { echo "mutation.sh: mutmut is not installed (pip install -e '.[mutation]')" >&2; exit 2; }

for row in "${MODULES[@]}"; do
  IFS='|' read -r name files funcs tests <<<"$row"
  selected "$name" || continue
  copy="$WORK/$name"
  mkdir -p "$copy"
  # The working tree as git sees it (tracked and untracked, not ignored), over the old copy.
  (cd "$REPO" && git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - 2>/dev/null) \
    | tar -C "$copy" -xf -
  # Existing test files only (a module's *_mutants.py appears once it has survivors to kill).
  sel=""; for t in $tests; do
    [ -e "$copy/${t%%::*}" ] || continue
    [ "${BEFORE:-0}" = 1 ] && case "$t" in *_mutants.py) continue;; esac  # the score before those tests
    sel="$sel    $t"$'\n'
  done
  only=""; for f in $files; do [ -e "$copy/$f" ] && only="$only    $f"$'\n'; done
  also=""; for top in "$copy"/*; do
    b="$(basename "$top")"; case "$b" in harness|advisor|tests|mutants|setup.cfg|pyproject.toml) continue;; esac
    also="$also    $b"$'\n'
  done
  deselect=""; for d in "${DESELECT[@]}"; do deselect="$deselect    --deselect"$'\n'"    $d"$'\n'; done
  cat >"$copy/setup.cfg" <<EOF
[mutmut]
source_paths =
    harness
    advisor
only_mutate =
$only
pytest_add_cli_args_test_selection =
$sel
pytest_add_cli_args =
$deselect
also_copy =
$also
EOF
  names=()
  if [ "$funcs" != "*" ]; then
    mod="$(echo "$files" | cut -d' ' -f1 | sed 's/\.py$//; s#/#.#g')"
    for f in $funcs; do names+=("${mod}.x_${f}__mutmut_*${tail_glob}"); done
  elif [ -n "$tail_glob" ]; then
    for f in $files; do names+=("$(echo "$f" | sed 's/\.py$//; s#/#.#g').*__mutmut_*${tail_glob}"); done
  fi
  if [ -n "${MUTANT_NAMES:-}" ]; then read -r -a names <<<"$MUTANT_NAMES"; fi  # rerun just these (e.g. survivors)
  echo "== $name: mutating $files ($funcs) against$(echo $sel)"
  (cd "$copy" && env -u PYTHONPATH OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 \
      nice -n 10 "$PY" -m mutmut run --max-children "$JOBS" "${names[@]}" >"$copy/mutmut-run.log" 2>&1) \
    || { echo "mutmut run failed for $name: tail of $copy/mutmut-run.log" >&2; tail -20 "$copy/mutmut-run.log" >&2; exit 1; }
  (cd "$copy" && env -u PYTHONPATH "$PY" -m mutmut results --all true >"$copy/results.txt" 2>&1 || true)
  "$PY" - "$copy/results.txt" "$name" "$funcs" "$files" "*__mutmut_*${tail_glob}" <<'EOF'
import fnmatch, re, sys
path, name, funcs, files, sample = sys.argv[1:]
mods = [f[:-3].replace("/", ".") for f in files.split()]
keep = None if funcs == "*" else {f"x_{f}" for f in funcs.split()}
counts, survivors = {}, []
for line in open(path):
    m = re.match(r"\s*(\S+)__mutmut_\d+: (.+)$", line)
    if not m:
        continue
    fn, status = m.group(1), m.group(2).strip()
    if not fnmatch.fnmatch(line.split(":")[0].strip(), sample):
        continue
    mod, _, func = fn.rpartition(".")
    if mod not in mods and not any(fn.startswith(x + ".") for x in mods):
        continue
    if keep is not None and func not in keep:
        continue
    counts[status] = counts.get(status, 0) + 1
    if status == "survived":
        survivors.append(line.split(":")[0].strip())
total = sum(v for k, v in counts.items() if k != "not checked")
killed = counts.get("killed", 0) + counts.get("timeout", 0)
score = 100 * killed / total if total else 0.0
print(f"{name}: {'every mutant' if sample == '*__mutmut_*' else 'sample ' + sample}: killed {killed}/{total} ({score:.0f}%)  " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
for s in survivors:
    print(f"  survived: {s}")
EOF
done
