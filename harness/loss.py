"""The training loss: the model's own cross-entropy, or a chunked one that never holds the logits.

``train.loss=standard``: ``model(**batch).loss``, transformers' ``ForCausalLMLoss``: the head
writes B×S×V logits, upcast to fp32 for the cross-entropy, and autograd keeps them for backward.
At a 128K vocabulary that is 0.5 MB per token in fp32 (4 × 2048 tokens: 4 GiB), often the
largest single activation of a LoRA step.

``train.loss=chunked``: the decoder's hidden states go through the head ``CHUNK_TOKENS`` tokens
at a time; each chunk's logits and cross-entropy run inside ``torch.utils.checkpoint``, so only
the chunk's hidden states are saved and its logits are recomputed, one chunk at a time, in
backward (the idea of Liger's fused linear cross-entropy and Cut Cross-Entropy, written with
torch's own checkpoint). Same loss and gradients as standard (tests/test_loss.py), for one more
head matmul per token.
"""

from __future__ import annotations

from typing import Any

from advisor.facts import LOSS_CHUNK_TOKENS

LOSSES = ("standard", "chunked")
# 1024 tokens × a 128K vocabulary × 4 B = 0.5 GiB of fp32 logits per chunk, whatever the batch.
CHUNK_TOKENS = LOSS_CHUNK_TOKENS
IGNORE = -100  # label of positions without loss (prompt, padding), as transformers'


def causal_lm_loss(model: Any, batch: dict, kind: str = "standard", num_items_in_batch=None):
    """Next-token cross-entropy of ``batch`` (input_ids, attention_mask, labels), normalised as
    transformers does: the sum over scored tokens / ``num_items_in_batch`` if given, else their mean."""
    if kind == "standard":
        extra = {} if num_items_in_batch is None else {"num_items_in_batch": num_items_in_batch}
        return model(**batch, **extra).loss
    if kind != "chunked":
        raise ValueError(f"unknown loss '{kind}' ({', '.join(LOSSES)})")
    return chunked_loss(model, batch, num_items_in_batch)


def _causal_lm(model: Any):
    """The transformers *ForCausalLM under a PEFT wrapper (PEFT injects its layers in place)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def decoder_output(model: Any, batch: dict):
    """(the *ForCausalLM, the decoder's last hidden states): everything of the forward but the head."""
    lm = _causal_lm(model)
    decoder = getattr(lm, lm.base_model_prefix)
    return lm, decoder(input_ids=batch["input_ids"], attention_mask=batch.get("attention_mask")).last_hidden_state


def next_token_labels(labels):
    """``labels`` shifted so that position t holds token t + 1 (the last position: IGNORE)."""
    import torch.nn.functional as F

    return F.pad(labels, (0, 1), value=IGNORE)[..., 1:]


def chunked_loss(model: Any, batch: dict, num_items_in_batch=None):
    import torch
    from torch.utils.checkpoint import checkpoint

    lm, hidden = decoder_output(model, batch)
    labels = next_token_labels(batch["labels"])
    hidden, labels = hidden.reshape(-1, hidden.shape[-1]), labels.reshape(-1)
    head, softcap = lm.get_output_embeddings(), getattr(lm.config, "final_logit_softcapping", None)
    total = hidden.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden.shape[0], CHUNK_TOKENS):
        part = slice(start, start + CHUNK_TOKENS)
        total = total + checkpoint(_chunk_ce, head, hidden[part], labels[part], softcap, use_reentrant=False)
    if num_items_in_batch is None:
        return total / (labels != IGNORE).sum()
    return total / num_items_in_batch


def _chunk_ce(head, hidden, labels, softcap):
    import torch
    import torch.nn.functional as F

    logits = head(hidden).float()  # the fp32 upcast ForCausalLMLoss makes, one chunk at a time
    if softcap:  # Gemma 2: logits squashed into ±softcap before the loss
        logits = torch.tanh(logits / softcap) * softcap
    return F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="sum")


def trainer_class(kind: str):
    """transformers' Trainer, or a subclass whose ``compute_loss`` is ``causal_lm_loss(kind)``."""
    from transformers import Trainer

    if kind == "standard":
        return Trainer

    class ChunkedLossTrainer(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # the same normalisation Trainer gives the model's own loss: by the tokens of the whole accumulated batch
            items = num_items_in_batch if self.model_accepts_loss_kwargs else None
            loss = causal_lm_loss(model, inputs, kind, items)
            return (loss, None) if return_outputs else loss

    return ChunkedLossTrainer
