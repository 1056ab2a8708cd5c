"""Task data and scorers: determinism, disjoint splits, balance, held-out data, shipped files.

All of it is pure Python (no model, no network) and runs in about a second.
"""

from __future__ import annotations

import collections
import json
import re

import pytest

from harness.paths import DATA_DIR
from harness.tasks.arithmetic import ArithmeticTask, check, extract_answer, reward
from harness.tasks.base import example
from harness.tasks.tickets import (
    INSTRUCTION, LABELS, TicketsTask, first_label, load_handwritten, make_prompt, ticket_text,
)
from harness.tasks.tickets_prefs import TicketsPrefsTask, keyword_label

SMALL = dict(n_train=200, n_validation=60, n_test=80)


def _texts(examples) -> list[str]:
    return [ticket_text(ex.prompt[-1]["content"]) for ex in examples]


def _key(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


# ---------------------------------------------------------------- tickets
@pytest.fixture(scope="module")
def tickets0():
    return TicketsTask(seed=0).splits()


def test_tickets_deterministic_and_seeded(tickets0):
    assert TicketsTask(seed=0).splits() == tickets0
    other = TicketsTask(seed=1).splits()
    assert _texts(other["test"]) != _texts(tickets0["test"])


def test_tickets_sizes_and_test_split_independent_of_train_size(tickets0):
    assert [len(tickets0[s]) for s in ("train", "validation", "test")] == [600, 100, 200]
    assert TicketsTask(seed=0, n_train=50).splits()["test"] == tickets0["test"]


def test_tickets_no_text_shared_across_or_within_splits(tickets0):
    keys = [_key(t) for split in tickets0.values() for t in _texts(split)]
    assert len(keys) == len(set(keys))


def test_tickets_label_balance(tickets0):
    for split, exs in tickets0.items():
        counts = collections.Counter(ex.answer for ex in exs)
        assert set(counts) == set(LABELS)
        for label in LABELS:
            assert abs(counts[label] / len(exs) - 0.25) <= 0.08, (split, counts)


def test_tickets_prompt_shape(tickets0):
    ex = tickets0["train"][0]
    assert [m["role"] for m in ex.messages] == ["system", "user", "assistant"]
    assert ex.prompt[0]["content"] == INSTRUCTION and ex.prompt[1]["content"].startswith("Ticket: ")
    assert ex.answer in LABELS
    assert make_prompt("hello") == [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": "Ticket: hello"}]


def test_tickets_have_hard_cases(tickets0):
    hard = [ex for ex in tickets0["train"] if ex.meta["scenario"].startswith("hard_")]
    assert 0.15 < len(hard) / len(tickets0["train"]) < 0.45
    # Hard cases exist to fool keywords: the naive matcher must do clearly worse on them.
    wrong = sum(keyword_label(t) != ex.answer for t, ex in zip(_texts(hard), hard))
    assert wrong / len(hard) > 0.4


def test_tickets_text_has_no_gaps_from_empty_alternatives(tickets0):
    # "[in {browser}|]" may pick the empty alternative: no double space, no space before punctuation.
    texts = [t for split in tickets0.values() for t in _texts(split)]
    assert not [t for t in texts if re.search(r"  | [.,?!]", t)]


@pytest.mark.parametrize("generation,label,ok", [
    ("billing", "billing", True),
    ("Billing.", "billing", True),
    ("  URGENT!\nbecause the site is down", "urgent", True),
    ('"technical"', "technical", True),
    ("Label: general", "general", True),
    ("label - billing", "billing", True),
    ("**urgent**", "urgent", True),
    ("general: it is a question", "general", True),
    ("The ticket is billing", "billing", False),  # first word rule: "the" is not a label
    ("billings", "billing", False),
    ("", "billing", False),
    ("technical", "billing", False),
])
def test_tickets_first_word_scorer(generation, label, ok):
    ex = example([*make_prompt("x"), {"role": "assistant", "content": label}])
    assert TicketsTask().score(generation, ex) == float(ok)


def test_first_label_strips_punctuation():
    assert first_label("Urgent.") == "urgent"
    assert first_label("'billing'") == "billing"
    assert first_label("Category: Technical") == "technical"


# ---------------------------------------------------------------- handwritten tickets
HANDWRITTEN = ("tickets_handwritten.jsonl", "tickets_handwritten_b.jsonl")


@pytest.mark.parametrize("name", HANDWRITTEN)
def test_handwritten_file_valid_and_balanced(name):
    lines = (DATA_DIR / name).read_text(encoding="utf-8").splitlines()
    assert len(lines) >= 48
    rows = [json.loads(line) for line in lines]
    for row in rows:
        system, user, assistant = row["messages"]
        assert (system["role"], user["role"], assistant["role"]) == ("system", "user", "assistant")
        assert [system, user] == make_prompt(ticket_text(user["content"]))
        assert assistant["content"] in LABELS
    counts = collections.Counter(r["messages"][-1]["content"] for r in rows)
    assert all(counts[label] >= 12 for label in LABELS)
    assert len(set(counts.values())) == 1, counts  # equal per label
    texts = [_key(ticket_text(r["messages"][-2]["content"])) for r in rows]
    assert len(texts) == len(set(texts))


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("name", HANDWRITTEN)
def test_handwritten_not_in_generated_splits(seed, name):
    hand = {_key(t) for t in _texts(load_handwritten(DATA_DIR / name))}
    generated = {_key(t) for split in TicketsTask(seed=seed).splits().values() for t in _texts(split)}
    assert not hand & generated


# ---------------------------------------------------------------- preference pairs
def test_prefs_pairs():
    task = TicketsPrefsTask(seed=0, **SMALL)
    assert task.splits() == TicketsTask(seed=0, **SMALL).splits()
    for split in ("train", "test"):
        exs, pairs = task.splits()[split], task.preference_pairs(split)
        assert len(pairs) == len(exs)
        for ex, pair in zip(exs, pairs):
            assert pair["prompt"] == ex.prompt
            chosen, rejected = pair["chosen"][0]["content"], pair["rejected"][0]["content"]
            assert chosen == ex.answer and rejected in LABELS and rejected != chosen
            assert pair["chosen"][0]["role"] == pair["rejected"][0]["role"] == "assistant"
    assert task.preference_pairs("train") == TicketsPrefsTask(seed=0, **SMALL).preference_pairs("train")


def test_prefs_rejected_is_the_keyword_pick_when_it_is_wrong():
    pairs = TicketsPrefsTask(seed=0, **SMALL).preference_pairs("train")
    for pair in pairs:
        text = ticket_text(pair["prompt"][-1]["content"])
        if keyword_label(text) != pair["chosen"][0]["content"]:
            assert pair["rejected"][0]["content"] == keyword_label(text)


# ---------------------------------------------------------------- arithmetic
@pytest.mark.parametrize("text,value", [
    ("7", 7),
    ("7.", 7),
    ("3 + 4 = 7", 7),
    ("3 + 4 = 7.\nSo 7 it is", 7),
    ("The answer is 12", 12),
    ("-2", -2),
    ("3 - 5 = -2", -2),
    ("3-5=-2", -2),
    ("The answer is -13.", -13),
    ("1,234", 1234),
    ("600 + 634 = 1,234", 1234),
    ("12 apples and 3 pears", 12),
    ("\n\n  9\n", 9),
    ("no idea", None),
    ("", None),
])
def test_extract_answer(text, value):
    assert extract_answer(text) == value


def test_arithmetic_check_accepts_the_final_number_only_when_it_equals_the_answer():
    assert check("3 + 4 = 7", "7")
    assert not check("3 + 4 = 8", "7")
    assert check("-4", "-4") and not check("4", "-4")
    assert not check("seven", "7")


def test_reward_both_completion_formats():
    answers = ["7", "-2", "10"]
    plain = ["7", "The answer is -2.", "11"]
    chat = [[{"role": "assistant", "content": c}] for c in plain]
    assert reward(plain, answers) == [1.0, 1.0, 0.0]
    assert reward(completions=chat, answer=answers, prompts=["p"] * 3) == [1.0, 1.0, 0.0]


@pytest.mark.parametrize("difficulty", ["single_digit_add", "single_digit", "two_digit", "three_digit"])
def test_arithmetic_splits(difficulty):
    task = ArithmeticTask(seed=0, difficulty=difficulty)
    splits = task.splits()
    assert [len(splits[s]) for s in ("train", "validation", "test")] == [500, 100, 200]
    assert splits == ArithmeticTask(seed=0, difficulty=difficulty).splits()
    problems = {s: {ex.prompt[0]["content"] for ex in exs} for s, exs in splits.items()}
    assert not problems["train"] & problems["test"]
    assert not problems["train"] & problems["validation"]
    assert not problems["validation"] & problems["test"]
    for ex in splits["test"][:50]:
        a, op, b = re.match(r"What is (\d+) ([+-]) (\d+)\? Answer with the number only\.$",
                            ex.prompt[0]["content"]).groups()
        assert int(ex.answer) == (int(a) + int(b) if op == "+" else int(a) - int(b))
        assert task.score(ex.answer, ex) == 1.0


def test_arithmetic_seeds_and_bad_difficulty():
    assert ArithmeticTask(seed=0, difficulty="two_digit").splits() != ArithmeticTask(
        seed=1, difficulty="two_digit").splits()
    with pytest.raises(Exception, match="did you mean 'two_digit'"):
        ArithmeticTask(difficulty="two_digits")


# ---------------------------------------------------------------- general_mc / general_ppl
def test_general_mc_probe_is_unique_balanced_four_choice_questions_over_seven_domains():
    rows = [json.loads(line) for line in (DATA_DIR / "general_mc.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) >= 320
    for r in rows:
        assert set(r) == {"id", "domain", "question", "choices", "answer"}
        assert len(r["choices"]) == 4 and len(set(r["choices"])) == 4
        assert r["answer"] in range(4)
    assert len({r["id"] for r in rows}) == len(rows)
    assert len({r["question"] for r in rows}) == len(rows)
    positions = collections.Counter(r["answer"] for r in rows)
    assert all(0.20 <= positions[i] / len(rows) <= 0.30 for i in range(4)), positions
    assert len({r["domain"] for r in rows}) >= 7


def test_general_ppl_probe_is_7000_words_of_distinct_paragraphs():
    text = (DATA_DIR / "general_ppl.txt").read_text(encoding="utf-8")
    paragraphs = [p for p in text.split("\n\n") if p.strip()]
    assert len(text.split()) >= 7000
    assert len(paragraphs) >= 35
    assert len(set(paragraphs)) == len(paragraphs)
