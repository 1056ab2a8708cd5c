"""Forgetting as the harness measured it: general probes base → tuned, per method, lr and rank.

A harness record with ``eval.probes`` holds ``metrics.forgetting.<probe>`` = {base, tuned, drop,
stderr, …}, where ``drop`` > 0 means the tuned model is worse. A probe counts as *forgotten* when
the drop exceeds two standard errors (the harness's own rule, and the advisor's one significance
rule, ``SIGNIFICANT``), and as *kept* by a configuration when none of its runs forgot it.

Records match a recipe when they are of the same model family (SmolLM2-135M and SmolLM2-1.7B are
one family; ``family``) and the same kind of task (``TASK_KIND``: tickets is classification).
The guide's R-FORGET says "LoRA forgets less than full fine-tuning". Which method forgets more
depends on lr, rank and steps (results/data_scaling: LoRA r=64 at lr 1e-3 raised general
perplexity at 4 of 5 sizes; full fine-tuning at 1e-4 kept it at all 5). When the records hold an
adapter configuration that forgot a probe which a full fine-tuning configuration kept, the rule
is contradicted there and ``Forgetting.contradicts`` names it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from advisor.inputs.harness_runs import number, same_model

SIGNIFICANT = 2.0  # standard errors: a drop beyond it is forgetting; a score lead beyond it is a win
ADAPTERS = ("lora", "qlora", "dora")  # one family: the same adapters, the base's precision differs
# The harness's shipped tasks and the --capability they are an instance of (custom data: unknown).
TASK_KIND = {"tickets": "classification", "arithmetic": "reasoning", "tickets_prefs": "alignment"}
_SIZE = re.compile(r"[-_]?\d+(\.\d+)?[mbk]$")


def family(name: str) -> str:
    """'SmolLM2-135M' / 'smollm2-135m' → 'smollm2'; 'Qwen2.5-7B-Instruct' → 'qwen2.5'."""
    key = name.strip().lower().rsplit("/", 1)[-1]
    for tail in ("-instruct", "-chat", "-base", "-hf"):
        key = key.removesuffix(tail)
    return _SIZE.sub("", key)


def lr_text(lr: float | None) -> str:
    return "?" if lr is None else f"{lr:.0e}".replace("e-0", "e-")  # 3e-3, 1e-4


@dataclass(frozen=True)
class Probe:
    """One probe of one run."""

    run_id: str
    base: float
    tuned: float
    drop: float  # > 0: worse after tuning, in the metric's units
    stderr: float
    higher_is_better: bool

    @property
    def forgot(self) -> bool:
        return self.drop > SIGNIFICANT * self.stderr


@dataclass(frozen=True)
class Config:
    """The matching runs of one (method, rank, lr)."""

    method: str
    rank: int | None
    lr: float | None
    probes: dict  # probe name → tuple[Probe, ...]
    scores: tuple  # (task.n_train or 0, task_score, stderr) per run

    @property
    def adapter(self) -> bool:
        return self.method in ADAPTERS

    def label(self) -> str:
        core = "full" if self.method == "full" else f"{self.method} r={self.rank}"
        return f"{core} lr {lr_text(self.lr)}"

    def forgot(self, probe: str) -> bool:
        """Forgotten in most of its runs."""
        runs = self.probes.get(probe, ())
        return bool(runs) and 2 * sum(p.forgot for p in runs) > len(runs)

    def kept(self, probe: str) -> bool:
        runs = self.probes.get(probe, ())
        return bool(runs) and not any(p.forgot for p in runs)

    def score(self, n: int = 0, sizes=None) -> tuple[float, float] | None:
        """Task score and its standard error: at the training-set size in ``sizes`` nearest ``n``
        (sizes both compared configurations measured), else the mean over runs (stderr / √runs)."""
        rows = self.scores
        if sizes:
            size = min(sizes, key=lambda s: abs(math.log(max(s, 1) / max(n, 1))))
            rows = [r for r in rows if r[0] == size]
        if not rows:
            return None
        k = len(rows)
        return sum(s for _, s, _ in rows) / k, sum(e for _, _, e in rows) / k / math.sqrt(k)

    def sizes(self) -> set[int]:
        return {n for n, _, _ in self.scores}

    def says(self, probe: str) -> str:
        """'raised general_ppl 44 → 73 (significant in 4 of 5 runs)', medians over runs."""
        runs = sorted(self.probes[probe], key=lambda p: p.tuned)
        mid = runs[len(runs) // 2]
        hib = mid.higher_is_better
        fmt = ".2f" if hib else ".0f"
        worse = sum(p.forgot for p in runs)
        if not worse:
            verb = "kept"
        else:
            verb = "lowered" if hib else "raised"
        span = f"{runs[0].tuned:{fmt}}–{runs[-1].tuned:{fmt}}" if len(runs) > 1 else f"{mid.tuned:{fmt}}"
        return f"{verb} {probe} {mid.base:{fmt}} → {span} ({worse} of {len(runs)} run(s) worse by > {SIGNIFICANT:g} SE)"

    def row(self) -> dict:
        return {
            "method": self.method, "rank": self.rank, "lr": self.lr, "runs": len(self.scores),
            "task_score": None if self.score() is None else round(self.score()[0], 4),
            "probes": {name: {"forgot": self.forgot(name), "kept": self.kept(name),
                              "runs": [{"run_id": p.run_id, "base": p.base, "tuned": p.tuned, "drop": p.drop,
                                        "stderr": p.stderr, "significant": p.forgot} for p in runs]}
                       for name, runs in sorted(self.probes.items())},
        }  # fmt: skip


@dataclass(frozen=True)
class Forgetting:
    configs: tuple[Config, ...]
    contradicts: tuple[str, ...]  # guide rules the records contradict ("R-FORGET")

    def text(self) -> str:
        parts = []
        for c in self.configs:
            parts.append(f"{c.label()} " + " and ".join(c.says(p) for p in sorted(c.probes)))
        text = "; ".join(parts)
        if self.contradicts:
            text += (". The guide's \"LoRA forgets less than full fine-tuning\" (R-FORGET) does not hold on these "
                     "records: which method forgets depends on lr, rank and steps")  # fmt: skip
        return text

    def brief(self) -> str:
        """'lora r=64 lr 1e-3 forgot general_mc, general_ppl; full lr 1e-4 kept them'."""
        out = []
        for c in self.configs:
            lost = [p for p in sorted(c.probes) if c.forgot(p)]
            kept = [p for p in sorted(c.probes) if c.kept(p)]
            out.append(f"{c.label()} " + (f"forgot {', '.join(lost)}" if lost else f"kept {', '.join(kept)}" if kept else "mixed"))
        return "; ".join(out)

    def near(self, method: str, lr: float | None) -> list[Config]:
        """The configurations of ``method``'s family measured at ``lr`` (within 2×)."""
        fam = ADAPTERS if method in ADAPTERS else (method,)
        return [c for c in self.configs if c.method in fam and c.lr and lr and abs(math.log(c.lr / lr)) <= math.log(2)]

    def at(self, method: str, lr: float | None) -> Config | None:
        """The configuration of ``method``'s family at ``lr`` (within 2×) that forgot the most probes."""
        near = [c for c in self.near(method, lr) if any(c.forgot(p) for p in c.probes)]
        return max(near, key=lambda c: sum(c.forgot(p) for p in c.probes), default=None)

    def keeper(self, forgot: Config) -> Config | None:
        """A configuration of the other family that kept every probe ``forgot`` forgot, best-scoring first."""
        lost = [p for p in forgot.probes if forgot.forgot(p)]
        other = [c for c in self.configs if c.adapter != forgot.adapter and all(c.kept(p) for p in lost)]
        return max(other, key=lambda c: (c.score() or (0.0, 0.0))[0], default=None)


def read(runs, model_name: str, arch, capability: str) -> Forgetting | None:
    """The forgetting measured by matching ok runs, grouped by (method, rank, lr); None if there is none."""
    groups: dict[tuple, dict] = {}
    for r in runs:
        probes = r.metrics.get("forgetting")
        if r.status != "ok" or not isinstance(probes, dict) or not probes:
            continue
        if TASK_KIND.get(r.task) != capability:
            continue
        if family(r.model_name) != family(model_name) and not same_model(r, arch):
            continue
        key = (r.method, r.rank if r.method != "full" else None, r.lr)
        g = groups.setdefault(key, {"probes": {}, "scores": []})
        for name, f in probes.items():
            p = _probe(r.run_id, f)
            if p is not None:
                g["probes"].setdefault(name, []).append(p)
        score, se = number(r.metrics.get("task_score")), number(r.metrics.get("task_score_stderr"))
        if score is not None:
            g["scores"].append((r.n_train or 0, score, se or 0.0))
    configs = tuple(Config(m, rank, lr, {k: tuple(v) for k, v in g["probes"].items()}, tuple(g["scores"]))
                    for (m, rank, lr), g in sorted(groups.items(), key=lambda kv: (kv[0][0], kv[0][1] or 0, kv[0][2] or 0))
                    if g["probes"])  # fmt: skip
    if not configs:
        return None
    contradicted = any(a.forgot(p) and f.kept(p) for a in configs if a.adapter for f in configs if f.method == "full" for p in a.probes)
    return Forgetting(configs, ("R-FORGET",) if contradicted else ())


def _probe(run_id: str, f) -> Probe | None:
    if not isinstance(f, dict):
        return None
    vals = [number(f.get(k)) for k in ("base", "tuned", "drop", "stderr")]
    if any(v is None for v in vals):
        return None
    return Probe(run_id, *vals, bool(f.get("higher_is_better", True)))
