"""Fixtures for the advisor's tests: the CLI in-process."""

from __future__ import annotations

import pytest


@pytest.fixture
def run_cli(capsys):
    """``advisor …`` in-process: (exit code, stdout, stderr)."""
    from advisor.cli import main

    def run(*args: str):
        code = main(list(args))
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
