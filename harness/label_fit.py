"""Labels that fit a table cell: at most ``MAX_LABEL`` characters, still telling the runs apart.

``analysis.labels`` names a configuration by its method and the settings that differ. A differing
value can be long (a path, a run id, a list of modules): ``short_values`` cuts each key's values to
the least that still tells them apart (a path's file name, then the distinguishing end or start:
``…/lora-smollm2-135m-tickets-0a6ae38dea.json`` → ``…e38dea``), and ``fit`` keeps a whole label
within ``MAX_LABEL``. The full settings stay one hover away (the report's ``title`` attribute).
"""

from __future__ import annotations

import os
import re

MAX_LABEL = 40  # characters: five claim columns of such names fit a 1280-pixel screen
MAX_VALUE = 14  # a value longer than this is shortened (when shortening keeps the values apart)
ELLIPSIS = "…"


def _stem(value: str) -> str:
    """A path's file name without its extension; other values unchanged."""
    if "/" not in value and "\\" not in value:
        return value
    name = re.split(r"[/\\]", value.rstrip("/\\"))[-1]
    return re.sub(r"\.(json|safetensors|gguf|jsonl|ya?ml|txt)$", "", name) or value


def short_values(values: list[str], limit: int = MAX_VALUE, *, least: bool = False) -> dict[str, str]:
    """Each distinct value → a form of at most ``limit`` characters that keeps every value distinct:
    itself; its path's file name; the part that differs once the shared start and end are cut
    (``…0a6ae38dea``); its first or its last ``limit - 1`` characters with ``…``. ``least``: the
    fewest characters (at least 4 of the value) that keep them apart (``…0a6a``)."""
    distinct = sorted(set(values))
    if all(len(v) <= limit for v in distinct):
        return {v: v for v in distinct}
    stems = {v: _stem(v) for v in distinct}
    base = stems if len(set(stems.values())) == len(distinct) else {v: v for v in distinct}
    if all(len(b) <= limit for b in base.values()):
        return base
    if least:
        cores = _cores(base)
        for n in range(4, limit):
            for short in ([{v: _cut(b, n, tail=True) for v, b in cores.items()}] if cores != base else []) + [
                    {v: _cut(b, n, tail=False) for v, b in base.items()}, {v: _cut(b, n, tail=True) for v, b in base.items()}]:
                if len(set(short.values())) == len(distinct):
                    return short
    n = limit - 1
    candidates = []
    if len(distinct) > 1:
        pre = os.path.commonprefix(list(base.values()))
        suf = os.path.commonprefix([b[len(pre):][::-1] for b in base.values()])[::-1]
        cores = {v: b[len(pre) : len(b) - len(suf)] for v, b in base.items()}
        candidates.append({v: (ELLIPSIS if pre else "") + c[: n - 1] + (ELLIPSIS if suf or len(c) > n - 1 else "")
                           if len(b) > limit else b for (v, c), b in zip(cores.items(), base.values())})
    candidates.append({v: b[:n] + ELLIPSIS if len(b) > limit else b for v, b in base.items()})
    candidates.append({v: ELLIPSIS + b[-n:] if len(b) > limit else b for v, b in base.items()})
    for short in candidates:
        if len(set(short.values())) == len(distinct):
            return short
    half = (limit - 1) // 2  # values that differ only in their middle: keep both ends
    return {v: b if len(b) <= limit else b[:half] + ELLIPSIS + b[-half:] for v, b in base.items()}


def _cores(base: dict[str, str]) -> dict[str, str]:
    """Each value without the start all values share (marked ``…``): run ids and paths differ at their end."""
    pre = os.path.commonprefix(list(base.values())) if len(base) > 1 else ""
    return {v: (ELLIPSIS + b[len(pre):]) if pre and len(b) > len(pre) else b for v, b in base.items()}


def _cut(text: str, n: int, *, tail: bool) -> str:
    body = text.lstrip(ELLIPSIS)
    lead = ELLIPSIS if text.startswith(ELLIPSIS) else ""
    if len(body) <= n + 1:  # an ellipsis in place of one character saves nothing
        return text
    return lead + body[:n] + ELLIPSIS if not tail or lead else ELLIPSIS + body[-n:]


def build(methods: list[str], columns: dict[str, list[str | None]], fmt: dict[str, str] | None = None,
          limit: int = MAX_LABEL) -> list[str]:
    """Labels ``method key=value …`` of at most ``limit`` characters, in as few steps as needed:
    long values cut to what keeps them apart (a path's file name, ``…0a6ae38dea``); then to the
    fewest such characters; then words shown without their key (``by_length``); then ``fit``."""
    fmt = fmt or {}

    def compose(least: bool, bare: bool) -> list[str]:
        short = {k: short_values([v for v in vals if v is not None], least=least) for k, vals in columns.items()}
        out = []
        for i, method in enumerate(methods):
            parts = [method]
            for k, vals in columns.items():
                if vals[i] is None:
                    continue
                value = fmt.get(k, "{}").format(short[k][vals[i]])
                word = bare and not re.fullmatch(r"[\d.e+-]+(GB)?", vals[i])
                parts.append(value if word else f"{short_key(k)}={value}")
            out.append(" ".join(parts))
        return out

    for least, bare in ((False, False), (True, False), (True, True)):
        labels = compose(least, bare)
        if max(map(len, labels), default=0) <= limit:
            return labels
    return fit(labels, limit)


def short_key(key: str) -> str:
    """``method.init_from`` → ``init_from``: a label names a setting by its last part."""
    return key.rsplit(".", 1)[-1]


def fit(labels: list[str], limit: int = MAX_LABEL) -> list[str]:
    """Cut labels over ``limit`` to ``limit`` characters (ending in ``…``); labels that the cut made
    equal get ``#1``, ``#2`` … so that no two configurations share a name."""
    out = [s if len(s) <= limit else s[: limit - 1].rstrip() + ELLIPSIS for s in labels]
    seen: dict[str, list[int]] = {}
    for i, s in enumerate(out):
        seen.setdefault(s, []).append(i)
    for s, idx in seen.items():
        if len(idx) > 1 and any(labels[i] != labels[idx[0]] for i in idx):
            for k, i in enumerate(idx, 1):
                tag = f"#{k}"
                out[i] = s[: limit - len(tag) - 1].rstrip() + ELLIPSIS + tag if len(s) + len(tag) > limit else s + tag
    return out
