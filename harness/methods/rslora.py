"""rsLoRA (Kalajdzievski 2023, "A Rank Stabilization Scaling Factor for Fine-Tuning with LoRA"):
LoRA whose update B·A is scaled by alpha/√r instead of alpha/r.

With alpha/r the update shrinks as 1/r, so at high rank the adapter learns slowly and larger
ranks stop paying off; alpha/√r keeps the update's magnitude stable across ranks. Same adapters,
same parameter count and memory as LoRA: only the scale differs, so this is LoRA with a flag
(peft's ``use_rslora``), composed, not subclassed. ``sweeps/method/rslora.yaml`` fixes alpha = 8,
which at r = 16 gives LoRA's default scale (8/√16 = 2 = 2r/r), so LoRA's lr carries over.
"""

from __future__ import annotations

from harness.methods.lora import LoRA

METHOD = LoRA(name="rslora", rslora=True)
