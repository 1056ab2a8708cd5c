"""Support tickets → urgent | billing | technical | general, generated from a seed.

The label rule (the same one the handwritten file follows):

1. **urgent** beats everything: the service is down or unusable for a team or its customers,
   a security problem (account takeover, unknown admins or keys, leaked data), data loss, or a
   legal/money deadline within hours (today). Whatever the topic or the tone.
2. Otherwise the topic of the main request decides: **billing** = what the customer is charged,
   refunded or invoiced, payment methods, plan changes; **technical** = the product misbehaves
   or will not install/connect/log in (even on a billing page, or a feature that makes invoices);
   **general** = questions, feedback, account admin, policies, everything else.
3. An actionable problem beats an aside: a billing/technical problem plus a general question is
   billing/technical; an error mentioned in passing ("it fixed itself") does not make it technical.
4. Tone, capitals, "!!!" and the word "urgent" never decide: a furious overcharge is billing,
   a polite outage is urgent, "URGENT: dark mode resets" is technical.

About 30% of each label is a hard case built to break keyword matching (scenario names start
with ``hard_``). Text comes from a small template grammar (``harness/data/tickets_grammar.json``): ``[a|b|c]`` picks one alternative,
``{slot}`` draws a filler (product, error, amount, time, ...), then a random opening, context,
tone, aside, closing, signature, casing and typos wrap the core sentence.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Callable

from harness.paths import DATA_DIR
from harness.tasks.base import Example, example, normalize

LABELS = ("urgent", "billing", "technical", "general")
INSTRUCTION = (
    "Classify this support ticket as urgent, billing, technical or general. Reply with the label only."
)
_TICKET_SEP = "Ticket: "
HANDWRITTEN_FILE = "tickets_handwritten.jsonl"
GRAMMAR_FILE = "tickets_grammar.json"


def make_prompt(text: str) -> list[dict]:
    """The prompt every tickets example uses (generated, handwritten, DPO pairs).

    The instruction is the system turn: it replaces chat templates' default system prompt
    (SmolLM2's adds ~20 tokens), which cuts a training example from ~86 to ~62 tokens.
    """
    return [{"role": "system", "content": INSTRUCTION}, {"role": "user", "content": f"{_TICKET_SEP}{text}"}]


def ticket_text(prompt_content: str) -> str:
    """Inverse of ``make_prompt``: the ticket text inside a user message."""
    return prompt_content.split(_TICKET_SEP, 1)[1]


def first_label(generation: str) -> str:
    """First word of the first line, lower-cased, punctuation stripped; "Label: x" counts as x."""
    words = re.findall(r"[a-z]+", normalize(generation))
    if len(words) > 1 and words[0] in ("label", "category"):
        words = words[1:]
    return words[0] if words else ""


# ---------------------------------------------------------------- slot fillers
def _pick(*options: str) -> Callable[[random.Random], str]:
    return lambda rng: rng.choice(options)


def _amount(rng: random.Random) -> str:
    cents = rng.choice(("", "", ".00", ".99", ".50"))
    return f"{rng.choice('$$€£')}{rng.choice((9, 12, 15, 19, 24, 29, 39, 49, 59, 79, 99, 120, 149, 240, 499))}{cents}"


def _error(rng: random.Random) -> str:
    code = rng.choice((400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504))
    return rng.choice((
        f"error {code}", f"a {code} error", f"'Error {code}'", f"code E{rng.randint(100, 999)}",
        "'Something went wrong'", "'Unable to connect to server'", "'Session expired'",
        "ERR_TIMED_OUT", "a blank white screen", "an endless spinner", "'Invalid token'",
        "'Upload failed'", "'Sync conflict'", f"error 0x{rng.randint(0x1000, 0xFFFF):X}",
        "'Request failed, try again later'", "'Permission denied'",
    ))


# The grammar's words are data (harness/data/tickets_grammar.json); the fillers that compute
# something (amounts, error codes, invoice numbers, times, team sizes) are code.
GRAMMAR = json.loads((DATA_DIR / GRAMMAR_FILE).read_text())
SLOTS: dict[str, Callable[[random.Random], str]] = {
    **{name: _pick(*options) for name, options in GRAMMAR["slots"].items()},
    "error": _error,
    "amount": _amount,
    "amount2": _amount,
    "inv": lambda rng: f"{rng.choice(('INV-', '#', 'INV', 'no. '))}{rng.randint(1000, 99999)}",
    "hour": lambda rng: f"{rng.randint(1, 6)}pm" if rng.random() < 0.6 else f"{rng.randint(9, 11)}am",
    "n_users": lambda rng: str(rng.choice((5, 8, 12, 20, 35, 40, 60, 120, 250))),
}


def _expand(template: str, rng: random.Random) -> str:
    """``[a|b]`` → one alternative, then ``{slot}`` → a filler (fillers may hold slots too)."""
    text = re.sub(r"\[([^\[\]]*)\]", lambda m: rng.choice(m.group(1).split("|")), template)
    for _ in range(2):  # depth 2: a filler such as "deadline" may contain {hours}
        text = re.sub(r"\{(\w+)\}", lambda m: SLOTS[m.group(1)](rng), text)
    # An empty alternative ("[in {browser}|]") leaves a double space or a space before punctuation.
    return re.sub(r" +([.,?!])", r"\1", re.sub(r"  +", " ", text)).strip()


# ---------------------------------------------------------------- scenarios
# label → ((name, templates), …); "hard_" scenarios are built to fool a keyword matcher.
SCENARIOS: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {
    label: tuple((name, tuple(templates)) for name, templates in scenarios)
    for label, scenarios in GRAMMAR["scenarios"].items()
}

# Wrappers are label-neutral on purpose: only the core sentence carries the label.
_W = GRAMMAR["wrappers"]
OPENINGS, CONTEXTS, POLITE = tuple(_W["openings"]), tuple(_W["contexts"]), tuple(_W["polite"])
THANKFUL, ANGRY, ASIDES = tuple(_W["thankful"]), tuple(_W["angry"]), tuple(_W["asides"])
# Passing remarks, with the labels each would contradict (so it is never added to those).
PASSING = tuple((remark, tuple(clashes)) for remark, clashes in _W["passing"])
CLOSINGS, SIGNATURES = tuple(_W["closings"]), tuple(_W["signatures"])

HARD_SHARE = 0.3  # hard cases per label; the rest draw from plain scenarios


def _typo(text: str, rng: random.Random) -> str:
    """One typo in one word of 4+ letters: swap, drop or double a letter."""
    words = text.split(" ")
    spots = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
    if not spots:
        return text
    i = rng.choice(spots)
    w, j = words[i], rng.randrange(1, len(words[i]) - 1)
    kind = rng.randrange(3)
    words[i] = (w[:j] + w[j + 1] + w[j] + w[j + 2:] if kind == 0 else
                w[:j] + w[j + 1:] if kind == 1 else w[:j] + w[j] + w[j:])
    return " ".join(words)


def make_ticket(label: str, rng: random.Random) -> tuple[str, str, str]:
    """One ticket for ``label``: (text, scenario name, core sentence before wrapping)."""
    scenarios = SCENARIOS[label]
    hard = [s for s in scenarios if s[0].startswith("hard_")]
    plain = [s for s in scenarios if not s[0].startswith("hard_")]
    scenario, templates = rng.choice(hard if rng.random() < HARD_SHARE else plain)
    core = _expand(rng.choice(templates), rng)

    parts = [rng.choice(OPENINGS)]
    if rng.random() < 0.15:
        parts.append(rng.choice(CONTEXTS))
    tone = rng.random()
    if tone < 0.12:
        parts.append(rng.choice(POLITE))
    parts.append(core)
    aside = rng.random()
    if aside < 0.08:  # mixed intent: a general question on the side never changes the label (rule 3)
        parts.append(rng.choice(ASIDES))
    elif aside < 0.14:
        parts.append(rng.choice([p for p, clashes in PASSING if label not in clashes]))
    if tone > 0.88:
        parts.append(rng.choice(ANGRY))
    elif tone > 0.80:
        parts.append(rng.choice(THANKFUL))
    closing = rng.choice(CLOSINGS)
    parts.append(closing)
    if closing.endswith(",") or rng.random() < 0.2:
        parts.append(rng.choice(SIGNATURES))
    text = _expand(" ".join(p for p in parts if p), rng)
    text = text[0].upper() + text[1:] if rng.random() < 0.85 else text

    casing = rng.random()
    if casing < 0.07:
        text = text.lower()
    elif casing < 0.09:
        text = text.upper()
    if rng.random() < 0.15:
        text = _typo(text, rng)
    return text, scenario, core


def _dedupe_key(text: str) -> str:
    # Case, punctuation and spacing differences do not make a new ticket.
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


class TicketsTask:
    """Balanced four-way ticket classification; splits share no ticket text."""

    name = "tickets"
    max_new_tokens = 4  # one label word is 1-2 tokens; room for "Label: x"

    def __init__(self, seed: int = 0, n_train: int = 600, n_validation: int = 100, n_test: int = 200):
        self.seed, self.sizes = seed, {"train": n_train, "validation": n_validation, "test": n_test}
        self._splits: dict[str, list[Example]] | None = None

    def splits(self) -> dict[str, list[Example]]:
        if self._splits is None:
            self._splits = self._generate()
        return {k: list(v) for k, v in self._splits.items()}

    def _generate(self) -> dict[str, list[Example]]:
        # Test first, then validation, then train, each from its own RNG: the test set of a seed
        # does not change when n_train does, and later splits skip texts earlier ones used.
        # A core sentence belongs to one split (it may repeat inside it with other wrappers), so
        # no test ticket is a train ticket with a new greeting.
        seen: set[str] = set()
        core_split: dict[str, str] = {}
        out: dict[str, list[Example]] = {}
        for split in ("test", "validation", "train"):
            # A str seed is hashed with SHA-512: stable across processes and PYTHONHASHSEED.
            rng = random.Random(f"tickets:{self.seed}:{split}")
            n = self.sizes[split]
            labels = [LABELS[i % len(LABELS)] for i in range(n)]  # exact balance (±1)
            rng.shuffle(labels)
            examples = []
            for label in labels:
                for _ in range(1000):  # the grammar has >10^6 texts per label; collisions are rare
                    text, scenario, core = make_ticket(label, rng)
                    core_key = _dedupe_key(core)
                    if _dedupe_key(text) not in seen and core_split.setdefault(core_key, split) == split:
                        break
                else:
                    raise RuntimeError(f"tickets: could not draw a new {label} ticket for {split}")
                seen.add(_dedupe_key(text))
                examples.append(example(
                    [*make_prompt(text), {"role": "assistant", "content": label}],
                    label=label, scenario=scenario,
                ))
            out[split] = examples
        return {s: out[s] for s in ("train", "validation", "test")}

    def score(self, generation: str, ex: Example) -> float:
        return float(first_label(generation) == ex.answer)


def load_handwritten(path: Path | None = None) -> list[Example]:
    """Hand-written held-out tickets (different products and phrasing from the grammar): by default
    the 64 of ``tickets_handwritten.jsonl``; ``tickets_handwritten_b.jsonl`` holds 48 more, written blind."""
    from harness.paths import DATA_DIR

    path = path or DATA_DIR / HANDWRITTEN_FILE
    with open(path, encoding="utf-8") as f:
        return [example(json.loads(line)["messages"]) for line in f if line.strip()]
