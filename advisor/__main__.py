"""``python -m advisor`` = the ``advisor`` console script."""

import sys

from advisor.cli import main

sys.exit(main())
