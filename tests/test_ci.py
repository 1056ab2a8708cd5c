"""What CI must have installed: a test that would skip on a developer's machine fails in CI.

CI systems set ``CI`` (GitHub Actions, GitLab, Buildkite: ``CI=true``); ``.ci/run`` sets it too.
"""

from __future__ import annotations

import os
import shutil

import pytest

IN_CI = os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def test_chromium_is_installed_in_ci():
    """The report's HTML screenshot test (tests/test_report.py) skips without Chromium; in CI that
    skip would hide a report that no longer renders, so there it is a failure."""
    if not IN_CI:
        pytest.skip("not in CI (CI unset): the screenshot test may skip here")
    assert chromium(), "CI is set but Chromium is not on PATH: scripts/setup.sh --test must install it (apt-get install chromium)"


def test_ci_script_sets_ci_and_installs_chromium():
    from tests.conftest import REPO

    run = (REPO / ".ci" / "run").read_text()
    setup = (REPO / "scripts" / "setup.sh").read_text()
    assert "export CI=" in run and "setup.sh --test" in run
    assert "install -y -qq chromium" in setup


def test_optuna_is_installed_in_ci():
    """tests/test_search.py skips without Optuna (the `search` extra); CI installs it with `test`."""
    if not IN_CI:
        pytest.skip("not in CI (CI unset): the search tests may skip here")
    import importlib.util

    assert importlib.util.find_spec("optuna"), "CI is set but optuna is missing: the `test` extra must include it"
