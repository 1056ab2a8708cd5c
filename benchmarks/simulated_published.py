"""Simulate every published memory row's step at 2 and 3 decoder layers, for `advisor validate --simulate`'s LOSO table.

    nice python benchmarks/simulated_published.py            # simulate what is not cached yet
    nice python benchmarks/simulated_published.py --only P1  # some rows only (--redo: again)
    nice python benchmarks/simulated_published.py --check P1 # one row at full depth beside its extrapolation

Each row of ``advisor/data/published_memory.csv`` is set up as the analytic path sets it up
(``advisor.validate.memory.published_setup``) and its step is simulated on fake tensors with the
model's real widths, vocabulary and attention, but 2 and then 3 decoder layers. Full depth is
extrapolated per phase and per tracker kind, linearly in the layers
(``advisor.simulate.published.extrapolate``): weights, gradients, optimizer states and saved
activations grow by one layer's worth per layer; the embeddings, head and logits do not.
The raw per-phase bytes are cached in ``advisor/data/simulated_published.json`` with the torch and
transformers versions; a row that fails is cached with its error and listed, never dropped.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from advisor.simulate.published import CACHE, DEPTHS, extrapolate, step_at_depth  # noqa: E402

COMMAND = "python benchmarks/simulated_published.py"


def _config(r: dict):
    from advisor.inputs import DATA
    from advisor.simulate import config_for, model_config
    from advisor.validate.memory import _model, published_setup

    m = _model(r["model"])
    cfg = model_config.from_path(DATA / r["model"]) if r["model"].startswith("configs/") else config_for(m)
    return published_setup(r), cfg


def simulate_row(r: dict, layers: int | None) -> dict:
    """The raw simulated step (bytes by phase and kind, and the facts the overhead model reads); ``layers`` None:
    at the model's own depth."""
    setup, cfg = _config(r)
    t0 = time.time()
    res = step_at_depth(setup, cfg, layers)
    keep = ("trainable_params", "total_params", "trainable_bytes", "quant_bytes", "bnb_dequant_bytes")
    return {"phases": {n: {k: int(v) for k, v in p.items()} for n, p in res["phases"].items()},
            **{k: int(res.get(k, 0)) for k in keep}, "seconds": round(time.time() - t0, 1)}  # fmt: skip


def load() -> dict:
    return json.loads(CACHE.read_text()) if CACHE.exists() else {"rows": {}}


def save(cache: dict) -> None:
    import torch
    import transformers

    cache["versions"] = {"torch": torch.__version__, "transformers": transformers.__version__}
    cache["command"] = COMMAND
    cache["depths"] = list(DEPTHS)
    tmp = CACHE.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1, sort_keys=True))
    os.replace(tmp, CACHE)


def check(row_id: str) -> None:
    from advisor.inputs.catalog import GIB
    from advisor.validate.memory import published_rows

    r = next(x for x in published_rows() if x["id"] == row_id)
    full = simulate_row(r, None)
    cache = load()
    entry = cache["rows"].get(row_id) or {f"L{d}": simulate_row(r, d) for d in DEPTHS}
    ext = extrapolate(entry, int(_config(r)[0].arch.layers))
    peak_full = max(p["total"] for p in full["phases"].values()) / GIB
    print(f"{row_id}: full depth {peak_full:.3f} GiB ({full['seconds']} s), extrapolated from {DEPTHS} layers "
          f"{ext['peak']['total'] / GIB:.3f} GiB ({100 * (ext['peak']['total'] / GIB / peak_full - 1):+.2f}%)")
    for n, p in full["phases"].items():
        print(f"  {n:15s} full {p['total'] / GIB:8.3f}  extrapolated {ext['phases'][n]['total'] / GIB:8.3f}")
    cache.setdefault("full_depth_check", {})[row_id] = {"full_gib": round(peak_full, 4), "extrapolated_gib": round(ext["peak"]["total"] / GIB, 4)}
    save(cache)


def main(argv=None) -> int:
    from advisor.validate.memory import published_rows

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", help="comma-separated row ids")
    p.add_argument("--redo", action="store_true", help="simulate again rows already cached")
    p.add_argument("--check", help="one row id: simulate it at full depth beside the extrapolation")
    args = p.parse_args(argv)
    if args.check:
        check(args.check)
        return 0
    only = set(args.only.split(",")) if args.only else None
    cache = load()
    for r in published_rows():
        if (only and r["id"] not in only) or (r["id"] in cache["rows"] and not args.redo):
            continue
        entry: dict = {}
        try:
            for d in DEPTHS:
                entry[f"L{d}"] = simulate_row(r, d)
        except Exception as e:  # noqa: BLE001  (recorded with the row, listed by advisor validate --simulate)
            entry = {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"}
        cache["rows"][r["id"]] = entry
        save(cache)
        print(r["id"], entry.get("error") or {k: v["seconds"] for k, v in entry.items()}, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
