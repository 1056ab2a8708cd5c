"""The simulated step's time (advisor/simulate/pricing.py) and the analytic one against every published
throughput row (advisor/data/published_throughput.csv): per row, per source, overall.

    PYTHONPATH=. python benchmarks/simulated_time.py [ROW_ID ...] [--json out.json]

Each row's step is traced on fake tensors (a 70B row takes about a minute on a 2-core machine);
nothing is fitted to these rows, so the per-source figures are also the leave-one-source-out ones.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("ids", nargs="*")
    ap.add_argument("--json")
    a = ap.parse_args(argv)
    from advisor.simulate.validate_time_sim import as_dict, print_report, simulated_time_rows
    from advisor.validate.speed import published_rows, published_time_rows

    rows = [r for r in published_rows() if not a.ids or r["id"] in a.ids]
    analytic = {r.id: r for r in published_time_rows()}
    t0 = time.time()

    def progress(r):
        an = analytic[r.id]
        print(f"{r.id:<5} {r.model:<15} {r.method:<10} {r.device:<10} measured {r.measured_tps:>7.0f}  simulated {r.predicted_tps:>7.0f} "
              f"({r.low_tps:.0f}-{r.high_tps:.0f}) {r.error_pct:+5.0f}%{'' if r.in_range else '*'}  analytic {an.predicted_tps:>7.0f} "
              f"{an.error_pct:+5.0f}%{'' if an.in_range else '*'}{'  (not scored)' if r.excluded else ''}", flush=True)  # fmt: skip

    sim = simulated_time_rows(rows, progress=progress)
    d = as_dict(sim, list(analytic.values()))
    print_report(d)
    print(f"{time.time() - t0:.0f} s wall (* measured outside the range)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(d, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
