"""Losses and scores of every method on a tiny ``debug=smoke`` run, as one JSON line.

A restructuring must not change what is measured: run this on the tree before and after, with
the same seed, and compare the two lines (they must be identical).

    PYTHONPATH=<old tree> python scripts/method_fingerprint.py > before.json
    PYTHONPATH=$PWD       python scripts/method_fingerprint.py > after.json
    diff before.json after.json

Eight tiny runs, one per method: about 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import json
import sys
import tempfile

CASES = {
    "full": ["method=full"],
    "lora": ["method=lora"],
    "qlora": ["method=qlora"],
    "dora": ["method=dora"],
    "rslora": ["method=rslora"],
    "fsdp": ["method=fsdp", "method.world_size=2"],
    "grpo": ["method=grpo", "task=arithmetic"],
    "dpo": ["method=dpo", "task=tickets_prefs"],
}


def main(names: list[str]) -> dict:
    from harness.config import load_spec
    from harness.run import execute

    out = {}
    for name in names or list(CASES):
        with tempfile.TemporaryDirectory() as d:
            rec = execute(load_spec(["debug=smoke", "train.lr=5e-3", "train.max_steps=4", f"results_dir={d}", *CASES[name]]))
        m = rec["metrics"]
        out[name] = {"status": rec["status"], "losses": m.get("train_losses"), "task_score": m.get("task_score"),
                     "task_score_base": m.get("task_score_base"), "trainable_params": m.get("trainable_params"),
                     "kl_from_base": m.get("kl_from_base"), "rewards": m.get("rewards"),
                     "reward_margin_last": m.get("reward_margin_last")}
    return out


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:]), sort_keys=True))
