"""LoRA and its variants, as data: ``use_dora`` (DoRA) and ``quantize: 4bit`` (QLoRA / QDoRA).

QLoRA = the same adapters on an NF4 base, prepared with ``prepare_model_for_kbit_training``.
"""

from __future__ import annotations

from harness.train import sft

# What `method.targets` presets mean for Llama-style models.
TARGETS = {
    "q_proj+v_proj": ["q_proj", "v_proj"],
    "attn": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "all-linear": "all-linear",  # peft: every Linear except the LM head
}


def target_modules(targets: str):
    return TARGETS.get(targets) or [t.strip() for t in targets.split("+")]


class LoRA:
    name = "lora"
    trains_base = False

    def load_kwargs(self, spec):
        return {"quantize": spec.method.quantize}

    def prepare(self, model, spec):
        from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

        m = spec.method
        if m.quantize:
            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.train.grad_checkpointing)
        config = LoraConfig(
            r=m.r,
            lora_alpha=m.lora_alpha,
            lora_dropout=m.dropout,
            target_modules=target_modules(m.targets),
            use_dora=m.use_dora,
            bias="none",
            task_type="CAUSAL_LM",
        )
        model = get_peft_model(model, config)
        if spec.train.grad_checkpointing:
            model.enable_input_require_grads()  # checkpointed blocks need a grad-requiring input
        return model

    def fit(self, model, tok, splits, spec, clock, progress):
        return sft(model, tok, splits["train"], spec, clock, progress)


METHOD = LoRA()
