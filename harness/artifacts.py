"""What a run keeps: its adapter or model, beside its record, and how to read it back.

Layout (``train.save``; single runs default to ``adapter``, sweep points to ``none``)::

    <results_dir>/<run_id>.json                  the record; its ``artifacts`` list names what follows
    <results_dir>/artifacts/<run_id>/
        tunebench_artifact.json                  manifest: kind, base model identity, method, config, run id
        adapter_config.json + adapter_model.safetensors      kind=adapter (LoRA/DoRA/QLoRA: MBs, not GBs)
        config.json + model.safetensors                      kind=model (full FT, or save=merged)
        tokenizer.json, tokenizer_config.json, …             always: the tokenizer the run trained with

The directory is built in a temp sibling and renamed (``harness/atomic.py``), so a reader sees all
of it or none of it.
A failure to save never costs the measurement: it becomes a warning in the record.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path

from harness.atomic import write_dir
from harness.errors import UserError, did_you_mean
from harness.record import add_warning

MANIFEST = "tunebench_artifact.json"
ARTIFACTS_SUBDIR = "artifacts"
KINDS = ("adapter", "model")  # adapter: apply to the base; model: loads on its own


def artifact_dir(results_dir: str | Path, run_id: str) -> Path:
    return Path(results_dir) / ARTIFACTS_SUBDIR / run_id


# ---------------------------------------------------------------- saving (inside a run)


def save(model, tok, spec, loaded, record: dict) -> list[dict]:
    """Keep what ``spec.train.save`` asks for; returns the record's ``artifacts`` list.

    Never raises (except Ctrl-C): the run's measurements are worth more than its weights, so a
    failure is appended to ``record["warnings"]`` and the list comes back empty.
    """
    if spec.train.save == "none":
        return []
    final = artifact_dir(spec.results_dir, spec.run_id)
    try:
        manifest = {
            "schema_version": 1,
            "run_id": spec.run_id,
            "method": spec.method.name,
            "save": spec.train.save,
            "base": loaded.identity,
            # The spec as run (the record's config too, since schema_version 2): enough to reload the exact base.
            "config": spec.to_dict(),
        }
        write_dir(final, lambda tmp: _fill(tmp, model, tok, spec, manifest), replace=True)  # the same run again: the new one
        return [describe(final, spec.results_dir)]
    except Exception as exc:  # noqa: BLE001 — see docstring
        last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {Path(last.filename).name}:{last.lineno}" if last else ""
        add_warning(record, f"artifact not saved (train.save={spec.train.save}): {type(exc).__name__}: {str(exc)[:300]}{where}")
        return []


def _fill(tmp: Path, model, tok, spec, manifest: dict) -> None:
    """Write weights, tokenizer and manifest into ``tmp``."""
    is_peft = hasattr(model, "peft_config")
    if is_peft and spec.train.save == "adapter":
        model.save_pretrained(tmp, safe_serialization=True)  # only the adapter: r·(d_in+d_out) per module
        manifest["kind"] = "adapter"
        manifest["adapter"] = adapter_summary(model)
    elif is_peft:  # save=merged: the exact path `harness export --merge` takes, on a fresh base
        with tempfile.TemporaryDirectory(prefix="tunebench-adapter-") as adapter:
            model.save_pretrained(adapter, safe_serialization=True)
            merged, note = merge(spec, adapter)
            merged.save_pretrained(tmp, safe_serialization=True)
            del merged
        manifest.update(kind="model", merged=True, note=note)
    else:  # full fine-tuning: the weights are the model
        model.save_pretrained(tmp, safe_serialization=True)
        manifest["kind"] = "model"
        if spec.train.save == "adapter":
            manifest["note"] = "full fine-tuning has no adapter: the whole model is saved"
    tok.save_pretrained(tmp)
    manifest["files"] = _sizes(tmp)
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")


def adapter_summary(model) -> dict:
    """Adapter facts for the manifest: rank, alpha, targeted modules, parameter count."""
    cfg = next(iter(model.peft_config.values()))
    n = sum(p.numel() for name, p in model.named_parameters() if "lora_" in name)
    targets = cfg.target_modules
    return {
        "r": cfg.r,
        "alpha": cfg.lora_alpha,
        "use_dora": bool(getattr(cfg, "use_dora", False)),
        "target_modules": sorted(targets) if isinstance(targets, (set, list, tuple)) else targets,
        "params": n,
    }


def _sizes(directory: Path) -> dict[str, int]:
    return {p.relative_to(directory).as_posix(): p.stat().st_size for p in sorted(directory.rglob("*")) if p.is_file()}


def describe(directory: Path, results_dir: str | Path) -> dict:
    """One ``artifacts`` entry: kind, path (relative to the record's directory), bytes, files."""
    manifest = json.loads((directory / MANIFEST).read_text())
    files = _sizes(directory)
    return {
        "kind": manifest["kind"],
        "path": directory.relative_to(results_dir).as_posix(),
        "bytes": sum(files.values()),
        "files": files,
    }


# ---------------------------------------------------------------- finding a run's artifact


@dataclass(frozen=True)
class Located:
    run_id: str
    record_path: Path
    record: dict
    directory: Path  # the artifact directory
    manifest: dict

    @property
    def results_dir(self) -> Path:
        return self.record_path.parent


def _run_ids(results: Path) -> list[str]:
    return sorted(p.stem for p in results.glob("*.json") if not p.name.startswith("."))


def locate(run: str, results: str | Path = "results/runs") -> Located:
    """A run id (or a unique prefix), a record path or an artifact directory → its artifact.

    Every way this can fail is a one-line UserError naming the thing.
    """
    given = Path(run).expanduser()
    if given.is_dir() and (given / MANIFEST).is_file():
        directory = given.resolve()
        manifest = _read_manifest(directory)
        record_path = directory.parent.parent / f"{manifest['run_id']}.json"
        record = _read(record_path) if record_path.is_file() else {"run_id": manifest["run_id"], "status": "ok", "metrics": {}}
        return Located(manifest["run_id"], record_path, record, directory, manifest)
    if given.is_dir():
        raise UserError(f"{given} is not an artifact directory (no {MANIFEST}); pass a run id, a record or artifacts/<run_id>")
    if run.endswith(".json") or given.is_file():
        if not given.is_file():
            raise UserError(f"record not found: {given}")
        record_path = given.resolve()
    else:
        results = Path(results).expanduser()
        if not results.is_dir():
            raise UserError(f"results directory not found: {results} (pass --results DIR)")
        record_path = results / f"{run}.json"
        if not record_path.is_file():
            ids = _run_ids(results)
            prefixed = [i for i in ids if i.startswith(run)]
            if len(prefixed) == 1:
                record_path = results / f"{prefixed[0]}.json"
            elif prefixed:
                raise UserError(f"run '{run}' is ambiguous in {results}: {', '.join(prefixed[:5])}{' …' if len(prefixed) > 5 else ''}")
            else:
                raise UserError(f"unknown run '{run}' in {results}{did_you_mean(run, ids)} ({len(ids)} runs there)")
    record = _read(record_path)
    run_id = record["run_id"]
    if record.get("status") != "ok":
        raise UserError(f"run {run_id} ended with status '{record.get('status')}': it saved nothing to evaluate")
    directory = record_path.parent / ARTIFACTS_SUBDIR / run_id
    listed = [a for a in record.get("artifacts") or [] if a.get("kind") in KINDS]
    if listed:
        directory = record_path.parent / listed[0]["path"]
    if not (directory / MANIFEST).is_file():
        save_mode = ((record.get("config") or {}).get("train") or {}).get("save")
        why = (
            "it was made with train.save=none; run it again with train.save=adapter"
            if save_mode == "none"
            else f"expected {directory}"
        )
        for w in record.get("warnings") or []:
            if w.startswith("artifact not saved"):
                why = w
        raise UserError(f"run {run_id} has no saved adapter or model: {why}")
    return Located(run_id, record_path, record, directory.resolve(), _read_manifest(directory))


def _read(record_path: Path) -> dict:
    from harness.record import read_record

    try:
        return read_record(record_path)
    except ValueError as e:
        raise UserError(str(e)) from None


def _read_manifest(directory: Path) -> dict:
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{directory / MANIFEST}: unreadable manifest ({e})") from None
    if manifest.get("kind") not in KINDS or "config" not in manifest or "run_id" not in manifest:
        raise UserError(f"{directory / MANIFEST}: not a tunebench artifact manifest")
    return manifest


# ---------------------------------------------------------------- loading and merging


def spec_of(manifest: dict, *, trust_remote_code: bool = False):
    """The run's spec, with ``model.trust_remote_code`` from the caller (the user's command line),
    never from the manifest: a results folder someone sends you must not switch remote code on."""
    from harness.config import spec_from_dict

    config = copy.deepcopy(manifest["config"])
    config["model"]["trust_remote_code"] = bool(trust_remote_code)
    return spec_from_dict(config, complete=True)  # a field added since the run: from the YAML


def load_base(manifest: dict, device: str, *, trust_remote_code: bool = False):
    """The run's base model exactly as trained (same init seed, dtype, quantization)."""
    return _load_base(spec_of(manifest, trust_remote_code=trust_remote_code), manifest, device)


def _load_base(spec, manifest: dict | None, device: str):
    from harness import models

    dtype = models.resolve_dtype(spec.train.dtype, device)
    loaded = models.load(spec.model, seed=spec.seed, dtype=dtype, device=device, quantize=spec.method.quantize)
    if manifest is not None and loaded.identity != manifest.get("base"):
        raise UserError(
            f"the base model of run {manifest['run_id']} is not the one it was trained on: "
            f"trained on {manifest.get('base')}, found {loaded.identity}"
        )
    return loaded


def load_trained(located: Located, device: str | None = None, *, trust_remote_code: bool = False):
    """(model, tokenizer) of the trained run: base + adapter, or the saved model itself."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from harness import models
    from harness.measure import device_of

    device = device or device_of()
    spec = spec_of(located.manifest, trust_remote_code=trust_remote_code)
    if located.manifest["kind"] == "adapter":
        from peft import PeftModel

        loaded = _load_base(spec, located.manifest, device)
        model = PeftModel.from_pretrained(loaded.model, str(located.directory))
    else:
        dtype = models.resolve_dtype(spec.train.dtype, device)
        model = AutoModelForCausalLM.from_pretrained(located.directory, dtype=dtype, trust_remote_code=trust_remote_code)
        if device == "cuda":
            model = model.to("cuda")
    model.eval()
    tok = AutoTokenizer.from_pretrained(located.directory, trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    torch.manual_seed(spec.seed)
    return model, tok


def merge(spec, adapter_dir: str | Path, manifest: dict | None = None, device: str | None = None):
    """(standalone model, note): the adapter merged into a fresh copy of the run's base.

    QLoRA adapters were trained against the NF4-rounded weights, so they are merged into the
    *dequantized* NF4 base (bf16 on a GPU, fp32 on CPU), not the original full-precision one.
    """
    from peft import PeftModel

    from harness.measure import device_of

    device = device or device_of()
    loaded = _load_base(spec, manifest, device)
    base, note = loaded.model, None
    if spec.method.quantize:
        import torch

        dtype = torch.bfloat16 if device == "cuda" else torch.float32
        base = base.dequantize(dtype=dtype)
        for attr in ("quantization_config",):
            if hasattr(base.config, attr):
                delattr(base.config, attr)
        base.is_quantized, base.hf_quantizer = False, None
        note = f"QLoRA: merged into the dequantized NF4 base ({'bf16' if dtype == torch.bfloat16 else 'fp32'})"
    model = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    return model, note


def export(located: Located, out: Path, *, merge_adapter: bool, trust_remote_code: bool = False) -> tuple[Path, str]:
    """Write a standalone copy of the run's artifact to ``out`` (atomically); returns (out, what was done)."""
    out = Path(out).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise UserError(f"--out {out} exists and is not empty; choose a new directory")
    kind = located.manifest["kind"]
    said: list[str] = []

    def build(tmp: Path) -> None:
        if kind == "adapter" and merge_adapter:
            spec = spec_of(located.manifest, trust_remote_code=trust_remote_code)
            model, note = merge(spec, located.directory, located.manifest)
            model.save_pretrained(tmp, safe_serialization=True)
            from transformers import AutoTokenizer

            AutoTokenizer.from_pretrained(located.directory, trust_remote_code=trust_remote_code).save_pretrained(tmp)
            said.append(f"merged the {located.manifest['method']} adapter into its base")
            if note:
                said.append(note)
        else:
            for p in located.directory.iterdir():
                if p.name != MANIFEST:
                    (shutil.copytree if p.is_dir() else shutil.copy2)(p, tmp / p.name)
            said.append(f"copied the saved {'model' if kind == 'model' else 'adapter (use --merge for a standalone model)'}")
        provenance = {k: v for k, v in located.manifest.items() if k != "files"}
        provenance["exported_merged"] = kind == "adapter" and merge_adapter
        (tmp / "tunebench_export.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")

    write_dir(out, build)  # an empty --out is replaced by the finished one
    return out, "; ".join(said)
