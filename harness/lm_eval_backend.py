"""lm-eval as a backend: the offline switch, task managers, the HFLM view of an in-memory model
and ``simple_evaluate``. Probe definitions (``harness/probes.py``) and scoring
(``harness/evaluate.py``) both use this module; it imports neither, so they do not import
each other in a circle.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
from pathlib import Path

BOOTSTRAP_ITERS = 1000  # only for lm-eval metrics without a closed-form stderr (f1, bleu, …)


@contextlib.contextmanager
def offline():
    """Keep lm-eval off the network: no dataset downloads, no model-info lookups.

    huggingface_hub and datasets read their offline flags at import time, and transformers is
    already imported here, so setting the environment is not enough: the module constants are
    switched too, and restored afterwards. An explicit ``HF_HUB_OFFLINE=0`` is respected.
    """
    if os.environ.get("HF_HUB_OFFLINE") == "0" or os.environ.get("HF_DATASETS_OFFLINE") == "0":
        yield
        return
    import datasets.config
    import huggingface_hub.constants as hub

    saved_env = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    saved = (hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE)
    os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    hub.HF_HUB_OFFLINE = datasets.config.HF_HUB_OFFLINE = datasets.config.HF_DATASETS_OFFLINE = True
    quiet = [logging.getLogger(n) for n in ("lm_eval", "lm-eval", "datasets")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.ERROR)  # lm-eval logs every request batch at INFO
    try:
        yield
    finally:
        hub.HF_HUB_OFFLINE, datasets.config.HF_HUB_OFFLINE, datasets.config.HF_DATASETS_OFFLINE = saved
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)


@functools.cache
def default_task_manager():
    """lm-eval's full task index (~14k YAML files, 10-30 s): built once per process, and only
    when a standard task is asked for."""
    from lm_eval.tasks import TaskManager

    with offline():
        return TaskManager()


def shipped_task_manager(include_dir: Path):
    from lm_eval.tasks import TaskManager

    return TaskManager(include_path=str(include_dir), include_defaults=False)


def hf_lm(model, tok, batch_size: int, *, add_bos_token: bool | None = None):
    """lm-eval's view of the in-memory model (PEFT adapters included)."""
    from lm_eval.models.huggingface import HFLM

    device = str(next(model.parameters()).device)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=batch_size, device=device, add_bos_token=add_bos_token)
    for name in ("loglikelihood", "loglikelihood_rolling", "generate_until", "_loglikelihood_tokens"):
        # No tqdm bar per request type (the rolling path asks for one explicitly, hence the
        # override rather than a default): the harness prints its own progress and timings.
        setattr(lm, name, _quiet(getattr(lm, name)))
    return lm


def _quiet(fn):
    return functools.wraps(fn)(lambda *args, **kwargs: fn(*args, **{**kwargs, "disable_tqdm": True}))


def simple_evaluate(lm, task_manager, name: str, *, limit: int | None, samples: bool) -> tuple[dict, float]:
    import lm_eval

    t = time.perf_counter()
    out = lm_eval.simple_evaluate(
        model=lm,
        tasks=[name],
        task_manager=task_manager,
        limit=limit,
        log_samples=samples,  # per-document results: only where a stderr or generations need them
        bootstrap_iters=BOOTSTRAP_ITERS,
        cache_requests=False,
    )
    return out, time.perf_counter() - t
