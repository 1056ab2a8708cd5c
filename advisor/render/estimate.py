"""How ``advisor estimate`` and ``advisor catalog`` look: dicts for ``--json`` and rich tables."""

from __future__ import annotations

from advisor.facts import GPUS
from advisor.inputs.catalog import model_table
from advisor.render.common import UNITS, breakdown_table, console, esc, memory_dict, rounded


def estimate_dict(model, setup, b) -> dict:
    d = {
        "model": model.name,
        "model_params_b": rounded(model.params / 1e9, 3),
        "setup": {
            "method": setup.method, "rank": setup.rank if setup.method != "full" else None, "targets": setup.targets,
            "batch_size": setup.batch_size, "seq_len": setup.seq_len, "grad_checkpointing": setup.grad_checkpointing,
            "precision": setup.precision, "optimizer": setup.optimizer, "gpus": setup.gpus, "grad_accum": setup.grad_accum,
            "device": setup.device, "sharding": setup.sharding if setup.gpus > 1 else None, "offload": setup.offload,
            "stack": setup.stack, "checkpointing": setup.ckpt, "loss": "fused" if setup.loss_kind == "fused" else "standard",
            "float8": setup.float8, "lora_experts": setup.lora_experts if setup.arch.is_moe else None,
            "kernels": list(setup.kernels),
        },  # fmt: skip
        "units": UNITS,
    }
    m = memory_dict(b)
    d.update(peak_allocated_gb=m.pop("peak_allocated_gb"), peak_reserved_gb=m.pop("peak_reserved_gb"),
             peak_allocated_gb_range=m.pop("peak_allocated_gb_range"), peak_reserved_gb_range=m.pop("peak_reserved_gb_range"),
             cpu_resident_gb=m.pop("cpu_resident_gb"), breakdown=m.pop("breakdown_gb"), **m)  # fmt: skip
    return d


def print_estimate(model, setup, b) -> None:
    c = console()
    where = f"per GPU over {setup.gpus} ({setup.sharding})" if setup.gpus > 1 else ("CPU" if setup.device == "cpu" else "one GPU")
    c.print(f"[bold]advisor estimate[/] — {model.name} ({model.params / 1e9:.2f}B), {setup.method}"
            + (f" r={setup.rank} {setup.targets}" if setup.method != "full" else "")
            + f", batch {setup.batch_size} × {setup.seq_len} tokens, checkpointing {setup.ckpt}, "
            f"{setup.precision}, {setup.optimizer}, {where}, stack {setup.stack}"
            + (f", offload {setup.offload}" if setup.offload != "none" else "")
            + (", fused linear cross-entropy" if setup.loss_kind == "fused" else "") + (", float8 linears" if setup.float8 else "")
            + (f", fused kernels {'+'.join(setup.kernels)}" if setup.kernels else "") + "\n")  # fmt: skip
    c.print(breakdown_table(b, f"Peak training memory ({b.peak_phase}; the other phase: {b.other_phase_gb:.2f} GB)"))
    c.print(f"\n  trainable parameters {b.trainable_params:,} of {b.total_params:,} ({100 * b.trainable_params / b.total_params:.2f}%)")
    if b.paged_optimizer_gb:
        c.print(f"  paged optimizer states {b.paged_optimizer_gb:.2f} GB in unified memory (not in the peak)")
    for n in b.notes:
        c.print(f"  [dim]{esc(n)}[/]")
    c.print(f"\n[dim]{UNITS}.[/]")


# ---------------------------------------------------------------- catalogs


def catalog_rows(which: str) -> list[dict]:
    if which == "models":
        return model_table()
    return [{"name": g.name, "memory_gb": g.memory_gb, "usable_gb": g.usable_gb, "bf16_tflops": g.bf16_tflops, "bf16": g.bf16}
            for g in GPUS.values()]  # fmt: skip


SHORT = {"params_b": "params B", "active_params_b": "active B", "num_hidden_layers": "layers", "hidden_size": "hidden", "intermediate_size": "inter",
         "num_attention_heads": "heads", "num_key_value_heads": "kv", "vocab_size": "vocab", "tie_word_embeddings": "tied"}


def print_catalog(which: str, rows: list[dict]) -> None:
    from rich.table import Table

    rows = [{SHORT.get(k, k): v for k, v in r.items() if k not in ("hub_id", "head_dim")} for r in rows]
    t = Table(show_edge=False)
    for col in rows[0]:
        t.add_column(col, justify="right" if isinstance(rows[0][col], (int, float)) and not isinstance(rows[0][col], bool) else "left",
                     no_wrap=True, min_width=max(len(str(r[col])) for r in rows) if col == "name" else None)  # fmt: skip
    for r in rows:
        t.add_row(*("–" if v is None else str(v) for v in r.values()))
    c = console()
    if not c.is_terminal:
        c.width = 130
    c.print(t)
