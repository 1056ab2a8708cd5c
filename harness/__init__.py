"""tunebench's harness: measured fine-tuning runs, sweeps, and their records."""

import logging
import warnings

__version__ = "0.1.0"

# Third-party noise on every run, about nothing a user can act on:
# - bitsandbytes' CPU backend (on AVX512-BF16 CPUs) logs that it could not fetch a Hub kernel
#   ("kernels-community"); the harness never downloads at run time, and bitsandbytes falls back to
#   its own CPU 4-bit kernels;
# - peft reads transformers' deprecated `is_gradient_checkpointing` on every get_peft_model.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
warnings.filterwarnings("ignore", message=r".*`is_gradient_checkpointing` is deprecated.*", category=FutureWarning)
