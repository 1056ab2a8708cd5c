"""Errors meant for the person at the keyboard: one line naming the flag, exit code 2, no traceback.

The advisor keeps its own copy of this small module rather than importing ``harness.errors``:
importing anything under ``harness`` may one day pull in torch, and the advisor must answer
instantly on a machine that has none.
"""

from __future__ import annotations

import difflib
from typing import Iterable

EXIT_USAGE = 2


class AdvisorError(Exception):
    """Bad input (a flag value, a file, a name). The message is the whole story."""


def did_you_mean(value: str, choices: Iterable[str], *, key=str.lower) -> str:
    """`` (did you mean 'X'?)`` when one choice is close to ``value``, else ``''``."""
    choices = list(choices)
    keyed = {key(c): c for c in choices}
    close = difflib.get_close_matches(key(str(value)), list(keyed), n=1, cutoff=0.6)
    return f" (did you mean '{keyed[close[0]]}'?)" if close else ""


def bad_choice(flag: str, value: str, choices: Iterable[str]) -> AdvisorError:
    choices = list(choices)
    return AdvisorError(f"{flag}: '{value}' is not one of {', '.join(choices)}{did_you_mean(value, choices)}")
