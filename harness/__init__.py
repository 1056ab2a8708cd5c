"""tunebench's harness: measured fine-tuning runs, sweeps, and their records."""

__version__ = "0.1.0"
