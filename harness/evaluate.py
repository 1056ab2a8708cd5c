"""Scoring through lm-eval on the in-memory model: the task score, forgetting probes, KL from base.

Everything is an lm-eval task run by ``lm_eval.simple_evaluate`` on ``HFLM(pretrained=model)``
(adapters included): the fine-tuning task (rendered per run, scored by the task's own checker),
tunebench's shipped probes and lm-eval's standard tasks. One evaluator, one kind of stderr.

Offline by design: while lm-eval runs, the Hugging Face hub is switched off in-process (unless
the user set ``HF_HUB_OFFLINE=0`` / ``HF_DATASETS_OFFLINE=0``), so a standard task is usable only
when its dataset is already in the cache; otherwise ``check_probes`` says so before training.

Base-model results are cached in ``<cache>/base_scores`` per (model identity, load settings,
what is evaluated, limit), so a sweep scores each base once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

from harness import lm_eval_templates, probes
from harness.atomic import write_json
from harness.errors import UserError
# lm-eval plumbing (offline switch, task managers, the HFLM view, simple_evaluate) is its own module
from harness.lm_eval_backend import task_manager_for
from harness.lm_eval_backend import hf_lm as _lm
from harness.lm_eval_backend import offline as _offline
from harness.lm_eval_backend import shipped_task_manager as _shipped_task_manager
from harness.lm_eval_backend import simple_evaluate as _simple_evaluate
from harness.paths import cache_dir
from harness.tasks.base import Example, Task, fingerprint

CACHE_VERSION = 2  # 2: scored through lm-eval (v1 entries, by direct generation, are not reused)
# Metric reported for an lm-eval task that tunebench does not ship, first one present wins:
# acc_norm is what lm-eval's own tables quote for hellaswag / arc; mmlu has acc only.
STANDARD_METRICS = ("acc_norm", "acc", "exact_match", "f1", "mcc", "word_perplexity", "bleu")


@dataclass(frozen=True)
class Score:
    mean: float
    stderr: float
    n: int
    seconds: float
    metric: str = "task_score"
    higher_is_better: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@contextlib.contextmanager
def _eval_mode(model):
    was_training = model.training
    try:
        yield
    finally:
        model.train(was_training)  # HFLM switches the model to eval mode and leaves it there


def _number(value) -> float:
    return float(value) if isinstance(value, (int, float)) else float("nan")  # lm-eval writes "N/A"


def word_perplexity(items: Sequence[tuple[float, int]]) -> tuple[float, float]:
    """Word perplexity exp(-ΣL/ΣW) over documents (L = log-likelihood, W = words) and its stderr.

    lm-eval gives this metric no stderr (its weighted aggregation is not bootstrapped), so it is
    computed here: R = -ΣL/ΣW is a ratio estimator, var(R) ≈ Σ(-Lᵢ - R·Wᵢ)² / (n(n-1)·W̄²), and
    by the delta method se(exp R) ≈ exp(R)·se(R).
    """
    n = len(items)
    if n == 0:
        return float("nan"), float("nan")
    nll = [-float(ll) for ll, _ in items]
    words = [float(w) for _, w in items]
    r = sum(nll) / sum(words)
    if n < 2:
        return math.exp(r), float("nan")
    w_bar = sum(words) / n
    var = sum((a - r * w) ** 2 for a, w in zip(nll, words)) / (n * (n - 1) * w_bar**2)
    return math.exp(r), math.exp(r) * math.sqrt(var)


def _score_of(out: dict, name: str, metric: str | None, higher_is_better: bool | None, seconds: float) -> Score:
    res = out["results"][name]
    available = [k.split(",")[0] for k in res if "," in k and "_stderr" not in k]
    if metric is None:
        metric = next((m for m in STANDARD_METRICS if m in available), available[0] if available else None)
    if metric not in available:
        raise UserError(f"probe '{name}': lm-eval reported no '{metric}' (it reported: {', '.join(available) or 'nothing'})")
    key = next(k for k in res if k.split(",")[0] == metric)
    value, stderr = _number(res[key]), _number(res.get(key.replace(metric, f"{metric}_stderr", 1)))
    if metric == "word_perplexity" and out.get("samples", {}).get(name):
        value, stderr = word_perplexity([s["word_perplexity"] for s in out["samples"][name]])
    if higher_is_better is None:
        higher_is_better = bool(out.get("higher_is_better", {}).get(name, {}).get(metric, True))
    n = sum(int(v.get("effective", 0)) for v in out.get("n-samples", {}).values())
    return Score(value, stderr, n, seconds, metric, higher_is_better)


# ---------------------------------------------------------------- the fine-tuning task
def score(model, tok, task: Task, examples: list[Example], *, batch_size: int) -> tuple[Score, list[str]]:
    """The task's score on ``examples`` through lm-eval: greedy generation up to the task's
    ``max_new_tokens`` from the chat-templated prompt, each output judged by ``task.score``.
    Returns the score and the generations (in ``examples`` order)."""
    with tempfile.TemporaryDirectory(prefix="tunebench-eval-") as d, lm_eval_templates.task_scorer(task.score, examples) as token:
        lm_eval_templates.render(Path(d), lm_eval_templates.TASK_TEMPLATE, lm_eval_templates.task_rows(tok, examples, token), MAX_NEW_TOKENS=task.max_new_tokens)
        with _offline(), _eval_mode(model):
            # add_bos_token=False: the chat template already holds every special token it wants,
            # exactly as in training (tokenised with add_special_tokens=False).
            lm = _lm(model, tok, batch_size, add_bos_token=False)
            out, seconds = _simple_evaluate(lm, _shipped_task_manager(Path(d)), lm_eval_templates.TASK_TEMPLATE, limit=None, samples=True)
    result = _score_of(out, lm_eval_templates.TASK_TEMPLATE, "task_score", True, seconds)
    docs = sorted(out["samples"][lm_eval_templates.TASK_TEMPLATE], key=lambda s: s["doc"]["index"])
    return result, [s["filtered_resps"][0] if isinstance(s["filtered_resps"], list) else s["filtered_resps"] for s in docs]


def _key(*parts) -> str:
    blob = json.dumps([CACHE_VERSION, *parts], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _cached(path: Path) -> Score | None:
    if not path.exists():
        return None
    try:
        return Score(**json.loads(path.read_text()))
    except (ValueError, TypeError):
        return None  # a damaged cache entry is recomputed, never trusted


def base_score(model, tok, task: Task, examples: list[Example], *, identity: dict, load: dict, batch_size: int) -> tuple[Score, bool]:
    """Score of the untrained model, from the cache when this exact evaluation was done before."""
    key = _key(identity, load, task.name, fingerprint(examples), task.max_new_tokens, lm_eval_templates.template_hash(lm_eval_templates.TASK_TEMPLATE))
    path = cache_dir() / "base_scores" / f"{key}.json"
    hit = _cached(path)
    if hit is not None:
        return hit, True
    result, _ = score(model, tok, task, examples, batch_size=batch_size)
    write_json(path, result.to_dict())
    return result, False


# ---------------------------------------------------------------- forgetting probes
def check_probes(names: Sequence[str]) -> list[probes.Probe]:
    """Resolve probe names and make sure each can run, before any training: unknown names and
    standard tasks whose dataset is not available offline become one-line UserErrors."""
    resolved = probes.resolve(names)
    for p in resolved:
        if p.shipped:
            p.rows()  # a missing or malformed shipped file is named now, not after training
            continue
        with _offline():
            try:
                task_manager_for(p.name).load([p.name])
            except Exception as e:  # noqa: BLE001 — datasets raises many kinds when offline
                raise UserError(
                    f"probe '{p.name}': lm-eval's task could not load its dataset offline "
                    f"({type(e).__name__}); download it into the Hugging Face cache first, or use "
                    f"{', '.join(sorted(probes.PROBES))}"
                ) from None
    return resolved


def probe_scores(model, tok, names: Sequence[str], *, limit: int | None, batch_size: int) -> dict[str, Score]:
    """Each probe scored on ``model``; ``limit`` documents per probe (None → all). Shipped probes
    take ``limit`` documents spread over their file; lm-eval's tasks take their first ``limit``."""
    resolved = probes.resolve(names)
    scores: dict[str, Score] = {}
    with tempfile.TemporaryDirectory(prefix="tunebench-probes-") as d, _offline(), _eval_mode(model):
        for p in resolved:
            if p.shipped:
                lm_eval_templates.render(Path(d), p.name, probes.spread(p.rows(), limit))
        shipped_tm = _shipped_task_manager(Path(d)) if any(p.shipped for p in resolved) else None
        lm = _lm(model, tok, batch_size)
        for p in resolved:
            tm = shipped_tm if p.shipped else task_manager_for(p.name)
            need_samples = p.metric == "word_perplexity"
            out, seconds = _simple_evaluate(lm, tm, p.name, limit=None if p.shipped else limit, samples=need_samples)
            scores[p.name] = _score_of(out, p.name, p.metric, p.higher_is_better, seconds)
    return scores


def base_probe_scores(
    model, tok, names: Sequence[str], *, limit: int | None, batch_size: int, identity: dict, load: dict
) -> tuple[dict[str, Score], dict[str, bool]]:
    """Probe scores of the untrained model, each from the cache when available; also which were cached."""
    from importlib import metadata

    paths = {}
    for p in probes.resolve(names):
        what = (
            [p.name, probes.fingerprint(probes.spread(p.rows(), limit)), lm_eval_templates.template_hash(p.name)]
            if p.shipped
            else [p.name, limit, metadata.version("lm_eval")]
        )
        paths[p.name] = cache_dir() / "base_scores" / f"{_key(identity, load, 'probe', *what)}.json"
    scores = {name: hit for name, path in paths.items() if (hit := _cached(path)) is not None}
    missing = [n for n in names if n not in scores]
    if missing:
        fresh = probe_scores(model, tok, missing, limit=limit, batch_size=batch_size)
        for name, s in fresh.items():
            write_json(paths[name], s.to_dict())
        scores.update(fresh)
    return {n: scores[n] for n in names}, {n: n not in missing for n in names}


# ---------------------------------------------------------------- KL from the base model
def kl_from_base(model, base, tok, prompts: Sequence, *, batch_size: int = 4, max_len: int = 512) -> float:
    """Mean per-token KL(tuned ‖ base) of the next-token distributions over ``prompts``.

    ``prompts``: Examples (their full messages: prompt + reference answer), chat message lists,
    or plain strings. ``base``: the reference model, or None to use the tuned PEFT model with its
    adapters disabled (``model.disable_adapter()``: no second copy of the weights). Every
    non-padding position counts once; the result is in nats per token (0 = no drift).
    """
    import torch

    def text(p) -> str:
        if isinstance(p, str):
            return p
        messages = list(p.messages) if isinstance(p, Example) else list(p)
        return tok.apply_chat_template(messages, tokenize=False)

    if base is None and not hasattr(model, "disable_adapter"):
        raise ValueError("kl_from_base: base=None needs a PEFT model (adapters to disable)")
    device = next(model.parameters()).device
    texts = [text(p) for p in prompts]
    total, count = 0.0, 0
    old_side = tok.padding_side
    tok.padding_side = "right"
    try:
        with _eval_mode(model), torch.inference_mode():
            model.eval()
            for i in range(0, len(texts), batch_size):
                enc = tok(texts[i : i + batch_size], return_tensors="pt", padding=True, truncation=True,
                          max_length=max_len, add_special_tokens=False).to(device)
                logp_t = torch.log_softmax(model(**enc).logits.float(), dim=-1)
                if base is None:
                    with model.disable_adapter():
                        logits_b = model(**enc).logits
                else:
                    was = base.training
                    base.eval()
                    logits_b = base(**enc).logits
                    base.train(was)
                logp_b = torch.log_softmax(logits_b.float(), dim=-1)
                kl = (logp_t.exp() * (logp_t - logp_b)).sum(-1)  # [batch, seq]
                mask = enc["attention_mask"].bool()
                total += kl[mask].sum().item()
                count += int(mask.sum())
    finally:
        tok.padding_side = old_side
    return total / count if count else float("nan")


# ---------------------------------------------------------------- reference generation
def generate(model, tok, prompts: list[list[dict]], *, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy completions for chat prompts, batched with left padding, without lm-eval.

    The reference for ``score``: tests check that lm-eval's generations match these.
    """
    import torch

    device = next(model.parameters()).device
    old_side = tok.padding_side
    tok.padding_side = "left"
    out: list[str] = []
    try:
        with _eval_mode(model):
            model.eval()
            for i in range(0, len(prompts), batch_size):
                texts = [tok.apply_chat_template(p, tokenize=False, add_generation_prompt=True) for p in prompts[i : i + batch_size]]
                enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(device)
                with torch.inference_mode():
                    gen = model.generate(
                        **enc,
                        max_new_tokens=max_new_tokens,
                        do_sample=False,
                        pad_token_id=tok.pad_token_id,
                        eos_token_id=tok.eos_token_id,
                    )
                new = gen[:, enc["input_ids"].shape[1] :]
                out.extend(tok.batch_decode(new, skip_special_tokens=True))
    finally:
        tok.padding_side = old_side
    return out
