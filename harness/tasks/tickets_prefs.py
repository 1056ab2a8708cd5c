"""The tickets task as preference pairs for DPO: chosen = the label, rejected = a hard negative.

The rejected label is the one a naive keyword matcher would pick ("charged" → billing,
"error" → technical, "URGENT" → urgent). The generator's hard cases are built to fool exactly
that matcher, so on them the pair teaches the priority rule rather than the keywords. When the
matcher happens to be right, the rejected label is its runner-up (ties broken by a hash of the
text), so every pair is deterministic and chosen ≠ rejected.
"""

from __future__ import annotations

import hashlib

from harness.tasks.base import Example
from harness.tasks.tickets import LABELS, TicketsTask, ticket_text

# Substrings per label, matched on the lower-cased ticket; "!!!" and "asap" are tone, which
# the label rule ignores, so they make good distractors.
KEYWORDS = {
    "urgent": ("urgent", "asap", "immediately", "emergency", "right now", "!!!", "down for"),
    "billing": ("charge", "invoice", "refund", "bill", "payment", "price", "$", "€", "£", "paid",
                "card", "plan", "subscription", "receipt", "fee"),
    "technical": ("error", "crash", "bug", "broken", "install", "log in", "login", "sync", "api",
                  "slow", "not working", "doesn't", "won't", "can't", "fails"),
    "general": ("?",),
}
# Urgent words are rare and loud: one hit outweighs a couple of topic words.
WEIGHTS = {"urgent": 3.0, "billing": 1.0, "technical": 1.0, "general": 0.5}


def keyword_scores(text: str) -> dict[str, float]:
    low = text.lower()
    return {label: WEIGHTS[label] * sum(low.count(k) for k in KEYWORDS[label]) for label in LABELS}


def keyword_ranking(text: str) -> list[str]:
    """Labels from most to least keyword evidence; ties keep ``LABELS`` order, except that
    "general" wins a ticket with no evidence at all (the matcher's fallback)."""
    scores = keyword_scores(text)
    if not any(scores.values()):
        return ["general", *[lab for lab in LABELS if lab != "general"]]
    return sorted(LABELS, key=lambda lab: (-scores[lab], LABELS.index(lab)))


def keyword_label(text: str) -> str:
    return keyword_ranking(text)[0]


def rejected_label(text: str, label: str) -> str:
    """The matcher's pick when it is wrong; else its runner-up. Runner-ups tied on score are
    ordered by a hash of the text, so zero-evidence ties do not always reject the same label
    (a fixed order made "urgent" the rejected answer of 40% of the pairs)."""
    scores = keyword_scores(text)
    top = keyword_label(text)
    if top != label:
        return top

    def salt(lab: str) -> str:
        return hashlib.sha256(f"{lab}:{text}".encode()).hexdigest()

    return min((lab for lab in LABELS if lab != label), key=lambda lab: (-scores[lab], salt(lab)))


class TicketsPrefsTask:
    """Same splits and scorer as ``TicketsTask``; adds DPO pairs in TRL's conversational format."""

    name = "tickets_prefs"
    max_new_tokens = TicketsTask.max_new_tokens

    def __init__(self, seed: int = 0, n_train: int = 600, n_validation: int = 100, n_test: int = 200):
        self.tickets = TicketsTask(seed=seed, n_train=n_train, n_validation=n_validation, n_test=n_test)

    def splits(self) -> dict[str, list[Example]]:
        return self.tickets.splits()

    def score(self, generation: str, ex: Example) -> float:
        return self.tickets.score(generation, ex)

    def preference_pairs(self, split: str) -> list[dict]:
        pairs = []
        for ex in self.splits()[split]:
            text = ticket_text(ex.prompt[-1]["content"])
            pairs.append({
                "prompt": ex.prompt,
                "chosen": [{"role": "assistant", "content": ex.answer}],
                "rejected": [{"role": "assistant", "content": rejected_label(text, ex.answer)}],
            })
        return pairs


def keyword_accuracy(examples: list[Example]) -> float:
    """How often the keyword matcher is right: a floor any trained model should beat."""
    hits = [keyword_label(ticket_text(ex.prompt[-1]["content"])) == ex.answer for ex in examples]
    return sum(hits) / max(1, len(hits))

