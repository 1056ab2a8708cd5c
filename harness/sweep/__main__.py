"""``python -m harness.sweep point|array …``: a sweep's child process (see harness/sweep/child.py)."""

import sys

from harness.sweep.child import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
