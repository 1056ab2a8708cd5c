"""Hydra composition: ``sweeps/config.yaml`` plus command-line overrides, turned into the typed
run spec (``harness/spec.py``) once, at the entry point. Bad overrides and values that only make
sense together (a method's options, a wrapper's inner method) are one-line errors here.
"""

from __future__ import annotations

from typing import Any, Mapping

from harness.errors import UserError, unknown
from harness.method_table import METHODS, method_names  # the method table: data only, imports nothing heavy
from harness.method_table import inner_of
from harness.method_table import options as method_options
from harness.paths import CONFIG_DIR
from harness.spec import EvalSpec, MethodSpec, ModelSpec, RunSpec, TaskSpec, TrainSpec
from harness.typecheck import build, tupled


def spec_from_dict(cfg: Mapping[str, Any], *, complete: bool = False) -> RunSpec:
    """Turn a resolved config (plain dict) into a RunSpec, checking every value.

    Every field is required: defaults live in the YAML only. ``complete=True`` is for a config
    written by an older tunebench (an artifact's manifest): a field added since comes from the
    YAML of the same model/method/task option.
    """
    cfg = completed(cfg) if complete else dict(cfg)
    cfg.pop("sweep", None)
    cfg.pop("search", None)
    cfg.pop("debug", None)
    cfg.pop("hydra", None)
    cfg.pop("launcher", None)  # sweep-runner settings: not part of a run
    cfg.pop("retry_failed", None)
    cfg.pop("log", None)  # where progress and tracking go (output_settings): not part of a run
    cfg.pop("logger", None)
    ev = dict(cfg.pop("eval", {}) or {})
    ev["probes"] = tupled(ev.get("probes"))
    train = dict(cfg.pop("train"))
    if "kernels" in train:
        train["kernels"] = tupled(train["kernels"])
    parts = {
        "model": build(ModelSpec, cfg.pop("model"), "model"),
        "method": build(MethodSpec, cfg.pop("method"), "method"),
        "task": build(TaskSpec, cfg.pop("task"), "task"),
        "train": build(TrainSpec, train, "train"),
        "eval": build(EvalSpec, ev, "eval"),
    }
    method = parts["method"]
    if method.name not in METHODS:
        raise unknown("method.name", method.name, method_names())
    method_options(method.name, method.options)  # every method: an option it does not read is a typo, not a no-op
    inner_of(method.name, method.inner)  # fsdp/grpo/dpo: full | lora; other methods: none
    t = parts["train"]
    stack = {"train.loss": t.loss if t.loss != "standard" else None, "train.checkpointing": "selective" if t.checkpointing == "selective" else None,
             "train.kernels": "[" + ",".join(t.kernels) + "]" if t.kernels else None}  # fmt: skip
    if METHODS[method.name].default_inner and any(stack.values()):  # harness.train.sft sets these up, not wrappers
        key, value = next((k, v) for k, v in stack.items() if v)
        raise UserError(f"{key}={value} applies to the supervised methods, not to {method.name} (it runs its own training loop)")
    return build(RunSpec, {**cfg, **parts}, "config")


def completed(cfg: Mapping[str, Any]) -> dict:
    """``cfg`` with the fields it lacks taken from the shipped YAML (same group options where they exist)."""
    from omegaconf import OmegaConf

    overrides = [f"{group}={name}" for group in ("model", "method", "task")
                 if (name := (cfg.get(group) or {}).get("name")) in group_options(group)]
    base = OmegaConf.to_container(compose(overrides), resolve=True)
    out = {**base, **cfg}
    for section in ("model", "method", "task", "train", "eval"):  # one level: arch and options stay whole
        out[section] = {**(base.get(section) or {}), **(cfg.get(section) or {})}
    return out


def group_options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def compose(overrides: list[str]):
    """Compose ``sweeps/config.yaml`` with command-line overrides; bad overrides → UserError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException, MissingConfigException
    from omegaconf.errors import OmegaConfBaseException

    for ov in overrides:
        key, _, value = ov.partition("=")
        key = key.lstrip("+~")
        if "." not in key and (CONFIG_DIR / key).is_dir() and value not in ("", "null"):
            options = group_options(key)
            if value not in options:
                raise unknown(f"{key} option", value, options)
    try:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            return hydra_compose(config_name="config", overrides=overrides)
    except MissingConfigException as e:
        raise UserError(str(e).splitlines()[0]) from None
    except (HydraException, OmegaConfBaseException) as e:
        msg = str(e).splitlines()[0]
        if "Could not override" in msg or "Key '" in msg:
            key = msg.split("'")[1] if "'" in msg else msg
            raise UserError(f"unknown setting '{key}' (add it with '+{key}=…' only if you mean to)") from None
        raise UserError(msg) from None


def load_spec(overrides: list[str]) -> RunSpec:
    from omegaconf import OmegaConf

    cfg = compose(overrides)
    return spec_from_dict(OmegaConf.to_container(cfg, resolve=True))
