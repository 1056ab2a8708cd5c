"""``python -m harness [overrides…]`` runs one measured fine-tune (or a sweep with ``sweep=<name>``);
``python -m harness <command> …`` runs a tool: results, report, regress, eval, export."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    from harness.cli import dispatch

    return dispatch(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
