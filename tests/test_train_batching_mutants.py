"""harness/train.py's batching, the batches every training loop trains on: how many steps, which rows
in which batch, how they are padded and how much of a batch is padding. Written against the
survivors of `scripts/mutation.sh train_batching` (docs/mutation.md)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from harness.train import GROUP_BATCHES, batch_order, collate, padding_fraction, total_steps, training_batches


def spec(max_steps=-1, epochs=1.0, batch_size=4, grad_accum=1, batching="shuffled", seed=0):
    return SimpleNamespace(seed=seed, train=SimpleNamespace(max_steps=max_steps, epochs=epochs, batch_size=batch_size,
                                                            grad_accum=grad_accum, batching=batching))


def test_collate_right_pads_and_masks_padding_out_of_attention_and_loss():
    rows = [{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}, {"input_ids": [8], "labels": [8]}]
    b = collate(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert b["labels"].tolist() == [[-100, 6, 7], [8, -100, -100]]
    assert b["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert b["input_ids"].dtype == b["labels"].dtype == b["attention_mask"].dtype
    assert str(b["input_ids"].dtype) == "torch.int64"
    assert collate(rows, pad_id=2)["input_ids"].tolist()[1] == [8, 2, 2]


def test_padding_fraction_is_padded_positions_over_all_positions():
    lengths = [10, 5, 5, 5]
    assert padding_fraction([[0, 1]], lengths) == pytest.approx(1 - 15 / 20)
    assert padding_fraction([[0, 1], [2, 3]], lengths) == pytest.approx(1 - 25 / 30)
    assert padding_fraction([[1, 2, 3]], lengths) == 0.0
    assert padding_fraction([], lengths) == 0.0


def test_steps_come_from_max_steps_or_from_epochs_over_the_global_batch():
    assert total_steps(spec(max_steps=7), 1000, 8) == 7
    assert total_steps(spec(epochs=2.0), 100, 8) == 25  # 2 × 100 // 8
    assert total_steps(spec(epochs=0.5), 100, 8) == 6
    assert total_steps(spec(epochs=1.0), 3, 8) == 1  # never 0 steps


def test_each_epoch_is_one_seeded_shuffle_cycled_as_often_as_needed():
    order = batch_order(10, 4, 5, seed=3)
    assert [len(b) for b in order] == [4] * 5
    flat = [i for b in order for i in b]
    assert sorted(flat[:10]) == list(range(10))  # epoch 1: every row once
    assert flat[:8] != list(range(8))  # shuffled
    assert order == batch_order(10, 4, 5, seed=3) and order != batch_order(10, 4, 5, seed=4)
    # the shuffle is random.Random(seed): the run's seed names its batches
    rng = random.Random(3)
    perm = list(range(10))
    rng.shuffle(perm)
    assert flat[:8] == perm[:8]
    assert batch_order(10, 4, 0, seed=3) == []
    with pytest.raises(ValueError, match="no training examples"):
        batch_order(0, 4, 1, seed=0)
    short = batch_order(3, 4, 2, seed=0)  # fewer rows than a batch: each batch is the whole set, reshuffled
    assert [sorted(b) for b in short] == [[0, 1, 2], [0, 1, 2]]


def test_length_grouping_sorts_within_windows_of_whole_batches():
    n, bs = 2 * bs_window(4) + 3, 4
    lengths = [random.Random(i).randint(10, 500) for i in range(n)]
    order = batch_order(n, bs, n // bs, seed=1, lengths=lengths)
    window = bs * GROUP_BATCHES
    # every full batch is a slice of the sorted window it came from: within it, no longer row
    # of the window falls between its shortest and its longest
    rng = random.Random(1)
    perm = list(range(n))
    rng.shuffle(perm)
    windows = [set(perm[s:s + window]) for s in range(0, n, window)]
    for b in order:
        (w,) = [w for w in windows if set(b) <= w]
        lo, hi = min(lengths[i] for i in b), max(lengths[i] for i in b)
        inside = [i for i in w if lo < lengths[i] < hi and i not in b]
        assert inside == [], (b, inside)
    # the window's batches are shuffled: not sorted short to long across a window
    firsts = [min(lengths[i] for i in b) for b in order[:GROUP_BATCHES]]
    assert firsts != sorted(firsts)
    assert sorted(i for b in order for i in b) == sorted(perm[: len(order) * bs])


def bs_window(bs):
    return bs * GROUP_BATCHES


def test_the_last_partial_batch_of_a_window_comes_after_the_full_ones():
    lengths = list(range(10))
    order = batch_order(10, 4, 3, seed=0, lengths=lengths)  # one window (32 rows) holding 10: 4 + 4 + 2
    flat = [i for b in order for i in b]
    assert sorted(flat[:10]) == list(range(10))
    tail = flat[8:10]
    assert sorted(tail) == [8, 9]  # the longest two (sorted last) are the short batch, placed last


def test_training_batches_are_steps_times_grad_accum_micro_batches_of_batch_times_world():
    steps, batches = training_batches(spec(max_steps=3, batch_size=2, grad_accum=2), 100, world=2)
    assert steps == 3 and len(batches) == 6 and all(len(b) == 4 for b in batches)
    steps, batches = training_batches(spec(epochs=1.0, batch_size=2, grad_accum=2), 40, world=2)
    assert steps == 5 and len(batches) == 10  # 40 rows // (2 × 2 × 2)
    assert batches == batch_order(40, 4, 10, seed=0)
    lengths = [i % 7 for i in range(40)]
    _, grouped = training_batches(spec(epochs=1.0, batch_size=2, grad_accum=2, batching="by_length"), 40, 2, lengths)
    assert grouped == batch_order(40, 4, 10, seed=0, lengths=lengths)
    _, plain = training_batches(spec(epochs=1.0, batch_size=2, grad_accum=2), 40, 2, lengths)
    assert plain == batches  # lengths alone do not group: only train.batching=by_length does
    with pytest.raises(ValueError, match="by_length needs the rows' lengths"):
        training_batches(spec(batching="by_length"), 40)
    assert training_batches(spec(max_steps=2, seed=5), 40)[1] == batch_order(40, 4, 2, seed=5)
