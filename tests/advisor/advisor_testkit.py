"""Records shaped like the harness's, for the advisor's tests (imported as a plain module)."""

from __future__ import annotations

import copy
import json
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
# A real record from `python -m harness debug=smoke` (tiny model, CPU): the schema as the harness writes it.
TINY_RECORD = DATA / "harness_cpu" / "lora-tiny-tickets-b0d647fcc7.json"

SMOLLM2_ARCH = {"num_hidden_layers": 30, "hidden_size": 576, "intermediate_size": 1536, "num_attention_heads": 9,
                "num_key_value_heads": 3, "vocab_size": 49152, "tie_word_embeddings": True}  # fmt: skip


def make_record(run_id: str, *, method="lora", status="ok", arch=None, device="cpu", peak=1.9, kind="cpu_rss_delta",
                r=16, quantize=None, use_dora=False, batch=8, seq=256, mean_seq=93.4, task_score=0.6, base=0.35,
                stderr=0.03, tokens_per_s=850.0, reserved=None, world_size=1, inner=None) -> dict:  # fmt: skip
    rec = copy.deepcopy(json.loads(TINY_RECORD.read_text()))
    rec["run_id"], rec["status"] = run_id, status
    rec["config"]["model"].update(name="smollm2-135m", arch=arch or SMOLLM2_ARCH)
    rec["config"]["method"].update(name=method, r=r, quantize=quantize, use_dora=use_dora, world_size=world_size, inner=inner)
    rec["config"]["train"].update(batch_size=batch, max_seq_len=seq, dtype="auto")
    rec["metrics"].update(peak_memory_gb=peak, memory_kind=kind, peak_reserved_gb=reserved, mean_seq_len=mean_seq,
                          task_score=task_score, task_score_base=base, task_score_stderr=stderr, tokens_per_s=tokens_per_s)  # fmt: skip
    rec["hardware"]["device"] = device
    return rec


def write(directory: Path, rec: dict) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{rec['run_id']}.json"
    path.write_text(json.dumps(rec))
    return path
