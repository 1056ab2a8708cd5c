"""What the advisor reads: the model catalog and ``config.json`` shapes (``catalog``, ``arch``), the
harness's run records (``harness_runs``, the one reader), and the published measurements in ``DATA``."""

from pathlib import Path

# The package's data folder (published rows, model configs), by path: editable installs' finders break files().
DATA = Path(__file__).resolve().parent.parent / "data"
