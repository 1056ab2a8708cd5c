"""tunebench's advisor: which fine-tuning recipe fits your GPU and data, and why.

It combines the practitioners' rules (``decide.rules``), an analytic memory model (``memory``) and the
harness's own measurements (``inputs.harness_runs``, weighed in ``decide.evidence``). It imports no torch and answers instantly.
"""

__version__ = "0.1.0"
