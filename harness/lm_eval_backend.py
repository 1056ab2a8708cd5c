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


def task_manager_for(name: str):
    """A TaskManager that can load the standard task, group or tag ``name``: lm-eval's index of only the
    task folders whose YAML mentions the name (a text scan, about a second, instead of parsing ~14k files) when
    that index holds it and, for a group, every member down the tree; else (tags, tasks defined in Python
    only) the full index, ``default_task_manager``."""
    return _narrow_task_manager(name) or default_task_manager()


@functools.lru_cache(maxsize=32)
def _narrow_task_manager(name: str):
    import re

    import lm_eval.tasks
    from lm_eval.tasks import TaskManager

    root = Path(lm_eval.tasks.__file__).parent
    word = re.compile(rf"(?<![\w-]){re.escape(name)}(?![\w-])")
    folders = set()
    for path in root.rglob("*.yaml"):
        try:
            if word.search(path.read_text(errors="replace")):
                folders.add(root / path.relative_to(root).parts[0])
        except OSError:
            continue
    if not folders:  # a task defined in Python only, or no such name: the full index decides
        return None
    with offline():
        tm = TaskManager(include_path=sorted(str(f) for f in folders), include_defaults=False)
    return tm if _resolvable(tm.task_index, name, set()) else None


def _resolvable(index: dict, name: str, seen: set) -> bool:
    """``name`` is a task in the index, or a group whose members all are, recursively (inline configs count)."""
    if name in seen:
        return True
    seen.add(name)
    entry = index.get(name)
    if entry is None or entry.kind.name == "TAG":  # a tag's tasks may live anywhere: only the full index has them all
        return False
    return entry.kind.name != "GROUP" or _members_resolvable(index, (entry.cfg or {}).get("task"), seen)


def _members_resolvable(index: dict, members, seen: set) -> bool:
    """A group's ``task`` list: names, and dicts that are a registered task or group with overrides (lm-eval builds
    an empty inline task when the name is not in the index), an inline subgroup, or an inline task with its own data."""
    if not isinstance(members, list):
        return True
    for m in members:
        if isinstance(m, str) and not _resolvable(index, m, seen):
            return False
        if not isinstance(m, dict):
            continue
        if isinstance(m.get("task"), list):  # an inline subgroup: its own members
            if not _members_resolvable(index, m["task"], seen):
                return False
        elif "dataset_path" not in m:  # a registered task or group, with overrides
            name = m.get("task") if isinstance(m.get("task"), str) else m.get("group")
            if not isinstance(name, str) or not _resolvable(index, name, seen):
                return False
    return True


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
