"""LoRA and its variants, as data: ``use_dora`` (DoRA) and ``quantize: 4bit`` (QLoRA / QDoRA).

QLoRA = the same adapters on an NF4 base (double quantization), prepared with
``prepare_model_for_kbit_training`` (norms and embeddings to fp32, inputs require grad).

4-bit compute dtype (chosen in ``harness.models.load``): bf16 on CUDA; fp32 on CPU unless
``train.dtype=bf16``. On CPU bitsandbytes 0.50 dequantizes each 4-bit weight for every matmul
(the fused ``kernels`` package is optional and not installed); measured on SmolLM2-135M at batch
8, that costs little: 139.6 tokens/s against LoRA's 115.8 in one ``sweep=method_matrix`` run
(more in docs/methods.md). ``models.load`` keeps the 4-bit layers out of bitsandbytes'
CPU inference repacking, which silently drops their gradient in training
(``models.keep_4bit_trainable``).

Memory (SmolLM2-135M, ``get_memory_footprint``): fp32 538 MB → NF4 166 MB (31%), not 1/8: the
tied 49152×576 embedding (28M of 135M params, 113 MB in fp32) is not a Linear in the decoder
and stays unquantized, as do the norms.
"""

from __future__ import annotations

from advisor.facts import TARGET_PRESETS
from dataclasses import dataclass

from harness.errors import UserError
from harness.method_table import METHODS
from harness.methods.base import Single
from harness.train import sft

# What `method.targets` presets mean (advisor/facts.py); "all-linear" goes to peft as is, which also
# finds every Linear but the LM head in architectures whose names differ from Llama's.
TARGETS = {name: list(mods) for name, mods in TARGET_PRESETS.items()} | {"all-linear": "all-linear"}


def target_modules(targets: str, model=None):
    """peft's ``target_modules`` for ``method.targets``: a preset, or names and presets joined by '+'
    (``all-linear+lm_head``: every Linear but the head, named from ``model``, and the head)."""
    if targets in TARGETS:
        return TARGETS[targets]
    out: list[str] = []
    for part in (p.strip() for p in targets.split("+")):
        if part == "all-linear":  # peft takes "all-linear" only alone: name the Linears it would find
            out += linear_names(model) if model is not None else list(TARGET_PRESETS["all-linear"])
        else:
            out += list(TARGET_PRESETS.get(part, (part,)))
    return list(dict.fromkeys(out))


def linear_names(model) -> list[str]:
    """The leaf names of ``model``'s Linear layers but its output head: what peft's "all-linear" adapts."""
    from torch import nn

    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return list(dict.fromkeys(n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear) and m is not head))


@dataclass(frozen=True)
class LoRA(Single):
    """``rslora``: scale the update by alpha/√r instead of alpha/r (``harness/methods/rslora.py``)."""

    name: str = "lora"
    rslora: bool = False
    capabilities = METHODS["lora"].capabilities  # qlora, dora, rslora: the same code, the same capabilities

    def check(self, method, train, task):
        super().check(method, train, task)
        if not method.r:
            raise UserError(f"method.r must be set for {method.name} (the adapter rank, e.g. 16)")

    def load_kwargs(self, method):
        return {"quantize": method.quantize}

    def prepare(self, model, method, train):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        m = method
        if m.quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=train.checkpoint_mode != "none")
        config = LoraConfig(
            r=m.r,
            lora_alpha=m.lora_alpha,  # null in YAML → 2r: the update scale alpha/r stays 2 as r changes
            lora_dropout=m.dropout,
            target_modules=target_modules(m.targets, model),
            use_dora=m.use_dora,
            use_rslora=self.rslora,
            bias="none",
            task_type="CAUSAL_LM",
        )
        try:
            model = get_peft_model(model, config)
        except ValueError as e:
            if "not found" in str(e):  # peft: "Target modules {...} not found in the base model"
                raise UserError(f"method.targets '{m.targets}': no such modules in this model "
                                f"(use {', '.join(TARGETS)} or module names joined by '+')") from None
            raise
        if train.checkpoint_mode != "none":
            model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
        return model

    def fit(self, model, tok, job, clock, progress):
        return sft(model, tok, job.splits["train"], job, clock, progress)


METHOD = LoRA()
