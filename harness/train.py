"""Training loops with the harness's clock and progress attached.

``sft``: supervised fine-tuning, loss on the assistant answer only (``tokenize_sft`` masks the
prompt). ``training_args`` and ``MeasureCallback`` are shared by every Trainer-based method
(SFT, TRL's GRPO and DPO); ``tokenize_sft``/``collate``/``training_batches`` by the plain loops
(the FSDP worker and the benchmark's bare loop).
"""

from __future__ import annotations

import tempfile
from typing import Any

from transformers import TrainerCallback

from harness.measure import StepClock
from harness.spec import BATCHING, RunSpec  # noqa: F401  (BATCHING: by_length | shuffled)
from harness.tasks.base import Example

OPTIM = {
    "adamw": "adamw_torch",
    "adamw8bit": "adamw_bnb_8bit",
    "paged_adamw8bit": "paged_adamw_8bit",
    "sgd": "sgd",
}


class MeasureCallback(TrainerCallback):
    """Feeds the StepClock (time + non-padding tokens per optimizer step), the loss log and progress.

    ``logs`` keeps every dict the trainer logged (GRPO's rewards, DPO's margins …) for the method.
    """

    def __init__(self, clock: StepClock, samples_per_step: int, progress=None):
        self.clock = clock
        self.samples_per_step = samples_per_step
        self.progress = progress
        self.task = None
        self.logs: list[dict] = []

    def on_train_begin(self, args, state, control, **kw):
        if self.progress is not None:
            self.task = self.progress.add_task("train", total=state.max_steps, loss=float("nan"), tokens_per_s=None)
        self.clock.begin()

    def on_step_end(self, args, state, control, **kw):
        self.clock.step_end(state.num_input_tokens_seen, state.global_step * self.samples_per_step)
        # A step the Trainer logs is shown with its own loss, from on_log (which comes right after).
        if self.progress is not None and state.global_step % max(1, int(args.logging_steps)) != 0:
            self.progress.update(self.task, completed=state.global_step, tokens_per_s=self._tokens_per_s())

    def _tokens_per_s(self):
        return self.clock.summary().get("tokens_per_s")  # so far, warm-up steps left out as in the record

    def on_log(self, args, state, control, logs=None, **kw):
        if logs:
            self.logs.append(dict(logs))
        if logs and "loss" in logs:
            self.clock.losses.append(float(logs["loss"]))
        if self.progress is not None and logs and "train_loss" not in logs:  # not the closing summary
            loss = {"loss": float(logs["loss"])} if "loss" in logs else {}
            self.progress.update(self.task, completed=state.global_step, tokens_per_s=self._tokens_per_s(), **loss)


def training_args(spec: RunSpec, device: str, config_cls, **extra):
    """TrainingArguments (or a TRL subclass) from the run spec: one place for shared settings."""
    t = spec.train
    import torch

    bf16 = t.dtype == "bf16" or (t.dtype == "auto" and device == "cuda" and torch.cuda.is_bf16_supported())
    settings = dict(
        output_dir=tempfile.mkdtemp(prefix="tunebench-trainer-"),
        max_steps=t.max_steps,
        num_train_epochs=t.epochs,
        per_device_train_batch_size=t.batch_size,
        gradient_accumulation_steps=t.grad_accum,
        learning_rate=spec.lr,
        lr_scheduler_type=t.scheduler,
        warmup_steps=t.warmup_ratio,  # a float < 1 is a ratio of total steps
        weight_decay=t.weight_decay,
        optim=OPTIM[t.optimizer],
        gradient_checkpointing=t.checkpoint_mode == "full",  # selective: harness.checkpointing, set up by sft()
        gradient_checkpointing_kwargs={"use_reentrant": False} if t.checkpoint_mode == "full" else None,
        bf16=bf16,
        fp16=t.dtype == "fp16",
        use_cpu=device == "cpu",
        seed=spec.seed,
        data_seed=spec.seed,
        logging_steps=t.log_every,
        save_strategy="no",
        eval_strategy="no",
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        include_num_input_tokens_seen="non_padding",
    )
    return config_cls(**{**settings, **extra})  # a method may override a shared setting


def quiet(trainer) -> None:
    """Drop the Trainer's own stdout logger: the harness shows progress and a summary instead."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


# ---------------------------------------------------------------- plain loops (FSDP worker, benchmark)


def tokenize_sft(tok: Any, examples: list[Example], max_len: int) -> list[dict]:
    """Chat-template each example; labels are -100 on the prompt, so loss is on the answer only.

    The same split SFTTrainer makes for prompt/completion data: the prompt rendered with the
    generation prompt, the completion = the rest of the full chat's text.
    """
    rows = []
    for ex in examples:
        prompt = tok.apply_chat_template(ex.prompt, tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template([*ex.prompt, {"role": "assistant", "content": ex.answer}], tokenize=False)
        if not full.startswith(prompt):  # a template that rewrites earlier turns: fall back to the answer text
            full = prompt + ex.answer + (tok.eos_token or "")
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        c_ids = tok(full[len(prompt) :], add_special_tokens=False)["input_ids"]
        ids = (p_ids + c_ids)[:max_len]
        labels = ([-100] * len(p_ids) + c_ids)[:max_len]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def collate(rows: list[dict], pad_id: int) -> dict:
    """Right-pad a batch; padding is masked out of attention and loss."""
    import torch

    n = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), n), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), n), -100, dtype=torch.long)
    mask = torch.zeros((len(rows), n), dtype=torch.long)
    for i, r in enumerate(rows):
        k = len(r["input_ids"])
        ids[i, :k] = torch.tensor(r["input_ids"])
        labels[i, :k] = torch.tensor(r["labels"])
        mask[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


# Length grouping: each epoch's shuffle is cut into windows of GROUP_BATCHES batches, sorted by
# length inside a window, and the window's batches are shuffled. Tickets run 49-111 tokens (mean 72):
# random batches of 8 pad to their longest row. Measured on the 600 train tickets, batch 8, 40 steps:
# padding_fraction 0.171 shuffled → 0.068 / 0.043 / 0.024 with windows of 4 / 8 / 16 batches
# (0.007 sorting the whole epoch). A window of 8 batches keeps each batch a sorted slice of a
# random draw of 64 rows (labels stay mixed), unlike sorting the whole epoch.
GROUP_BATCHES = 8


def batch_order(n_rows: int, batch_size: int, steps: int, seed: int, lengths: list[int] | None = None) -> list[list[int]]:
    """Row indices for ``steps`` batches: a seeded shuffle per epoch, cycled as often as needed.

    With ``lengths`` (one per row), rows of similar length share a batch (``GROUP_BATCHES``).
    """
    import random

    if n_rows == 0:
        raise ValueError("no training examples")
    rng = random.Random(seed)
    out: list[list[int]] = []
    order: list[int] = []
    while len(out) < steps:
        if len(order) < batch_size:
            perm = list(range(n_rows))
            rng.shuffle(perm)
            if lengths is not None:
                perm = _grouped(perm, lengths, batch_size, rng)
            order += perm
        out.append(order[:batch_size])
        order = order[batch_size:]
    return out


def _grouped(perm: list[int], lengths: list[int], batch_size: int, rng) -> list[int]:
    window = batch_size * GROUP_BATCHES
    out: list[int] = []
    for start in range(0, len(perm), window):
        rows = sorted(perm[start : start + window], key=lambda i: lengths[i])
        batches = [rows[k : k + batch_size] for k in range(0, len(rows), batch_size)]
        full = [b for b in batches if len(b) == batch_size]
        rng.shuffle(full)  # no long-to-short drift of step time inside a window
        out += [i for b in full + [b for b in batches if len(b) < batch_size] for i in b]
    return out


def padding_fraction(batches: list[list[int]], lengths: list[int]) -> float:
    """Share of a padded batch's positions that are padding, over all ``batches``."""
    real = sum(lengths[i] for b in batches for i in b)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return 1.0 - real / padded if padded else 0.0


def total_steps(spec: RunSpec, n_rows: int, global_batch: int) -> int:
    t = spec.train
    if t.max_steps > 0:
        return t.max_steps
    return max(1, int(t.epochs * n_rows // global_batch))


def training_batches(spec: RunSpec, n_rows: int, world: int = 1, lengths: list[int] | None = None) -> tuple[int, list[list[int]]]:
    """Optimizer steps and the micro-batches (row indices, ``batch_size × world`` each,
    ``steps × grad_accum`` of them) every training loop uses: SFT's Trainer, the FSDP worker (which
    splits each by rank) and the benchmark's bare loop train on the same batches.

    ``train.batching=by_length`` groups rows by ``lengths`` (token counts, one per row; required then).
    """
    b, ga = spec.train.batch_size, spec.train.grad_accum
    steps = total_steps(spec, n_rows, b * ga * world)
    if spec.train.batching == "by_length" and lengths is None:
        raise ValueError("train.batching=by_length needs the rows' lengths")
    grouped = lengths if spec.train.batching == "by_length" else None
    return steps, batch_order(n_rows, b * world, steps * ga, spec.seed, grouped)


def sft(model: Any, tok: Any, examples: list[Example], spec: RunSpec, clock: StepClock, progress=None) -> dict:
    """Supervised fine-tuning: transformers' Trainer on chats tokenized by ``tokenize_sft`` (loss on
    the answer only, computed by the model's own cross-entropy); returns the longest padded batch (``max_batch_seq_len``).

    Not TRL's SFTTrainer, although it does the same masking: SFTTrainer 1.16 always patches in a
    fused LM head that also computes per-token entropy and top-1 accuracy for its logs, with no
    setting to turn them off (``compute_loss_func`` or label smoothing add a second forward instead).
    On CPU the fused head scores every position in chunks, and ``benchmarks/methods.py --quick``
    measured SFTTrainer at 0.20 (lora) and 0.40 (full) of a bare loop's tokens/s on the tiny
    model. Plain Trainer + the model's loss is the bare loop plus Trainer's bookkeeping.
    """
    from datasets import Dataset
    from transformers import TrainingArguments

    from harness.checkpointing import enable
    from harness.loss import trainer_class
    from harness.measure import device_of

    # Trainer reads the rows in order (no sampler of its own): the batches of ``training_batches``.
    rows = tokenize_sft(tok, examples, spec.train.max_seq_len)
    lengths = [len(r["input_ids"]) for r in rows]
    steps, order = training_batches(spec, len(rows), lengths=lengths)
    ordered = [rows[i] for batch in order for i in batch]
    args = training_args(spec, device_of(), TrainingArguments, label_names=["labels"],  # PEFT hides forward's signature
                         max_steps=steps, train_sampling_strategy="sequential")
    pad_id = tok.pad_token_id
    longest = [0]  # the longest padded batch sets the activation peak (the advisor's input)

    def collate_and_track(batch_rows):
        batch = collate(batch_rows, pad_id)
        longest[0] = max(longest[0], batch["input_ids"].shape[1])
        return batch

    if spec.train.checkpoint_mode == "selective":
        enable(model, "selective")
    patched = {}
    if spec.train.kernels:  # after the method's prepare: the fused LoRA op replaces peft's adapter forward
        from harness.kernels import apply

        patched = apply(model, spec.train.kernels)
    trainer = trainer_class(spec.train.loss)(  # train.loss=chunked: the head and cross-entropy 1024 tokens at a time
        model=model,
        args=args,
        train_dataset=Dataset.from_list(ordered),
        data_collator=collate_and_track,
        processing_class=tok,
        callbacks=[MeasureCallback(clock, spec.train.batch_size * spec.train.grad_accum, progress)],
    )
    quiet(trainer)
    trainer.train()
    # Real tokens only count towards tokens/s (the Trainer's "non_padding"); this is what padding cost.
    return {"max_batch_seq_len": longest[0], "padding_fraction": padding_fraction(order, lengths),
            "batching": spec.train.batching, **({"kernels_patched": patched} if patched else {})}
