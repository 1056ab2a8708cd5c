"""The harness's stack options change memory, not the result: the chunked loss and selective
checkpointing give the standard step's loss and gradients, and each does what it is for."""

from __future__ import annotations

import pytest
import torch

TINY = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=96, tie_word_embeddings=True)  # fmt: skip
# Memory comparisons need layers wide enough that matmul outputs outweigh the rest, as in real models.
WIDE = dict(TINY, hidden_size=192, intermediate_size=512)


def _model(lora: bool, arch: dict = TINY):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**arch))
    if lora:
        from peft import LoraConfig, get_peft_model

        model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", lora_dropout=0.0, init_lora_weights=False))
    return model


def _batch():
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, TINY["vocab_size"], (3, 11), generator=g)
    labels = ids.clone()
    labels[:, :4] = -100  # the prompt: no loss
    mask = torch.ones_like(ids)
    mask[2, 8:] = 0  # a padded row
    labels[2, 8:] = -100
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _loss_and_grads(model, batch, loss="standard", items=None, ckpt="none"):
    from harness.checkpointing import enable
    from harness.loss import causal_lm_loss

    enable(model, ckpt)
    model.zero_grad(set_to_none=True)
    out = causal_lm_loss(model, batch, loss, items)
    out.backward()
    return out.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
@pytest.mark.parametrize("items", [None, 17], ids=["mean", "num_items"])
def test_chunked_loss_equals_the_models_own(monkeypatch, lora, items):
    import harness.loss

    monkeypatch.setattr(harness.loss, "CHUNK_TOKENS", 7)  # 33 tokens: 5 chunks, the last one short
    model, batch = _model(lora), _batch()
    ref, ref_grads = _loss_and_grads(model, batch, "standard", items)
    got, grads = _loss_and_grads(model, batch, "chunked", items)
    torch.testing.assert_close(got, ref)
    assert grads.keys() == ref_grads.keys() and len(grads) > 0
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], msg=name)
    # the comparison can fail: another normalisation gives another loss
    assert not torch.allclose(_loss_and_grads(model, batch, "chunked", 5)[0], ref)


def _held_after_forward(model, batch, loss="standard", ckpt="none") -> int:
    """Activation bytes alive between forward and backward (what checkpointing and chunking cut),
    counted by PyTorch's memory tracker on real tensors."""
    from advisor.simulate.mem_tracking import PeakTracker
    from harness.checkpointing import enable
    from harness.loss import causal_lm_loss

    enable(model, ckpt)
    tracker = PeakTracker()
    tracker.track_external(model, *batch.values())
    with tracker:
        out = causal_lm_loss(model, batch, loss)
        held = tracker.get_tracker_snapshot()[torch.device("cpu")]
    del out
    return sum(v for k, v in held.items() if k in ("Activation", "Temp"))


@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_selective_checkpointing_gives_the_same_gradients_for_less_memory(lora):
    batch = _batch()
    ref, ref_grads = _loss_and_grads(_model(lora), batch, ckpt="none")
    got, grads = _loss_and_grads(_model(lora), batch, ckpt="selective")
    torch.testing.assert_close(got, ref)
    for name in grads:
        torch.testing.assert_close(grads[name], ref_grads[name], msg=name)
    wide = {k: torch.cat([v] * 4, dim=1) for k, v in batch.items()}  # 44 tokens
    held = {mode: _held_after_forward(_model(lora, WIDE), wide, ckpt=mode) for mode in ("none", "selective", "full")}
    # selective keeps matmul and attention outputs: well below none, well above full (layer inputs only)
    assert held["none"] > 1.3 * held["selective"] and held["selective"] > 1.3 * held["full"], held


def test_chunked_loss_never_saves_the_whole_logits(monkeypatch):
    import harness.loss

    monkeypatch.setattr(harness.loss, "CHUNK_TOKENS", 7)
    model, batch = _model(False), _batch()
    logits_bytes = 3 * 11 * TINY["vocab_size"] * 4  # fp32 logits, kept for the cross-entropy's backward
    standard, chunked = _held_after_forward(model, batch, "standard"), _held_after_forward(model, batch, "chunked")
    assert standard - chunked >= 0.99 * logits_bytes, (standard, chunked)  # less a few scalar accumulators


def test_a_run_with_the_chunked_loss_and_selective_checkpointing_trains_and_records_them(run_tiny):
    rec = run_tiny("method=lora", "train.loss=chunked", "train.checkpointing=selective", "train.max_steps=3")
    assert rec["status"] == "ok", rec.get("error")
    assert rec["config"]["train"]["loss"] == "chunked" and rec["config"]["train"]["checkpointing"] == "selective"
    losses = rec["metrics"]["train_losses"]
    assert len(losses) == 3 and all(0 < loss < 100 for loss in losses)  # finite: the chunked loss trained
