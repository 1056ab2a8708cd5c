"""``harness export RUN --merge --out DIR``: from "this run won" to a model you can deploy.

``--merge`` folds a LoRA/DoRA adapter into its base (``merge_and_unload``) and saves a standalone
model — safetensors + config + tokenizer — that plain ``AutoModelForCausalLM.from_pretrained(DIR)``
loads with neither tunebench nor peft installed. QLoRA adapters merge into the dequantized NF4
base (bf16 on a GPU, fp32 on CPU). A full fine-tuning run is copied as saved. Without
``--merge`` an adapter is copied as it is (megabytes; needs peft and the base to use).
"""

from __future__ import annotations

import argparse

from harness.errors import run_cli


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="harness export", description="Write a run's trained model (or adapter) to a directory.")
    p.add_argument("run", help="run id (or unique prefix), record path, or artifacts/<run_id> directory")
    p.add_argument("--out", required=True, help="new directory to write")
    p.add_argument("--merge", action="store_true", help="merge the adapter into its base: a standalone model")
    p.add_argument("--results", default="results/runs", help="where run records live (default: results/runs)")
    p.add_argument("--trust-remote-code", action="store_true",
                   help="run the model's own Python code (only from here: a run's manifest or record cannot switch it on)")
    return p


def _main(argv: list[str]) -> int:
    from harness import artifacts
    from harness.console import quiet_libraries

    args = parser().parse_args(argv)
    quiet_libraries()
    located = artifacts.locate(args.run, args.results)
    out, what = artifacts.export(located, args.out, merge_adapter=args.merge, trust_remote_code=args.trust_remote_code)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    print(f"{located.run_id}: {what} → {out} ({size / 1e6:.1f} MB)")
    return 0


def main(argv: list[str]) -> int:
    return run_cli("harness export", lambda: _main(argv))
