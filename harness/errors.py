"""Errors meant for the person at the keyboard: one line, exit code 2, no traceback."""

from __future__ import annotations

import difflib
import sys
from typing import Callable, Iterable

EXIT_USAGE = 2


class UserError(Exception):
    """Bad input: a config value, a file, a name. The message is the whole story."""


def did_you_mean(value: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(str(value), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def unknown(kind: str, value: str, choices: Iterable[str]) -> UserError:
    choices = sorted(choices)
    return UserError(
        f"unknown {kind} '{value}'{did_you_mean(value, choices)}; choose one of: {', '.join(choices)}"
    )


def reject_unknown_keys(group: str, data, known) -> None:
    """A preset's ``group.key`` that its spec does not have: one line, with "did you mean"."""
    for key in data:
        if key not in known:
            raise UserError(f"unknown {group} setting '{group}.{key}'{did_you_mean(key, known)}")


def run_cli(prog: str, fn: Callable[[], int]) -> int:
    """Run ``fn``; turn UserError (and Ctrl-C) into a one-line message and an exit code."""
    try:
        return fn()
    except UserError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
