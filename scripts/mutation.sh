#!/usr/bin/env bash
# Mutation testing with mutmut 3 over the modules whose numbers users act on (docs/mutation.md).
#
#   pip install -e '.[mutation]'
#   scripts/mutation.sh                 # every module below, one after the other
#   scripts/mutation.sh regress schema  # some of them
#   JOBS=4 scripts/mutation.sh measure  # more mutmut workers (default 1: a shared machine)
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

# name | file to mutate | functions (mutmut name globs; "*" = all) | test files
MODULES=(
  "regress|harness/regress.py|log_ratio_ci _summary _show judge_ratio judge_equivalence _probe_table _status_row _data_changed compare provenance_diff summarize cpu_concurrency refuse_concurrent_mix regress _load|tests/test_regress.py tests/test_regress_mutants.py"
  "sweep_plan|harness/sweep/plan.py|*|tests/test_sweep_plan_mutants.py tests/test_record.py"
  "schema|harness/schema.py|*|tests/test_record.py tests/test_schema_mutants.py"
  "measure|harness/measure.py|*|tests/test_measure.py tests/test_measure_mutants.py"
  "train_batching|harness/train.py|collate batch_order _grouped padding_fraction total_steps training_batches|tests/test_foundation.py tests/test_train_batching_mutants.py"
  "analysis|harness/analysis.py harness/significance.py|*|tests/test_report.py tests/test_report_fit.py tests/test_analysis_mutants.py"
)

# Tests left out of every mutant run: each spawns a whole harness process (seconds) to check what a
# faster test in the same file already checks in-process (exit codes, the suite's own settings).
DESELECT=(
  "tests/test_regress.py::test_harness_regress_exits_1_when_forgetting_got_worse"
  "tests/test_regress.py::test_the_regression_suite_is_affordable_and_repeated"
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
  sel=""; for t in $tests; do [ -e "$copy/$t" ] && sel="$sel    $t"$'\n'; done
  only=""; for f in $files; do [ -e "$copy/$f" ] && only="$only    $f"$'\n'; done
  also=""; for top in "$copy"/*; do
    b="$(basename "$top")"; case "$b" in harness|tests|mutants|setup.cfg|pyproject.toml) continue;; esac
    also="$also    $b"$'\n'
  done
  deselect=""; for d in "${DESELECT[@]}"; do deselect="$deselect    --deselect"$'\n'"    $d"$'\n'; done
  cat >"$copy/setup.cfg" <<EOF
[mutmut]
source_paths =
    harness
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
