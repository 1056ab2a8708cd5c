"""One training configuration as the memory model reads it: model shape, method, batch, stack, GPUs.

``stack`` names the software whose habits change what is allocated (the published rows name theirs):
- ``hf``: transformers' Trainer/TRL + peft. peft keeps adapters in fp32 and casts their inputs;
  the loss upcasts the logits to fp32; QLoRA goes through ``prepare_model_for_kbit_training``
  (norms, embeddings, head and every other non-4-bit parameter upcast to fp32).
- ``torchtune``: bf16 adapters, 8-chunk cross-entropy, AdamW(fused=True).
- ``litgpt``: bf16-true everywhere (adapters and AdamW states bf16); the training loop keeps the
  LM head's 128-token logit chunks through backward. Its cross-entropy is counted like the HF one
  (12 B per logit at backward): a bf16-only loss (2 × 2 B) under-estimates every one of the nine
  single-GPU litgpt rows with a 32K-256K vocabulary by 10-35%, the fp32 count fits them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from advisor.errors import AdvisorError, bad_choice
from advisor.inputs.arch import Arch
from advisor.facts import LINEAR_NAMES, LOSS_CHUNK_TOKENS, OPTIMIZERS, SFT_METHODS, TARGET_PRESETS, parse_kernels  # noqa: F401  (re-exported)

if TYPE_CHECKING:
    from advisor.inputs.harness_runs import Run

METHODS = SFT_METHODS  # what trains; fsdp/grpo/dpo wrap one of these
TARGETS = tuple(TARGET_PRESETS)
PRECISIONS = ("bf16", "fp32", "bf16-mixed", "bf16-true")  # bf16-true: bf16 weights, no autocast (any stack)
ATTENTION = ("sdpa", "eager", "flash")
LOSSES = ("auto", "full", "chunked", "lowp", "fused")  # fused: Liger / Cut Cross-Entropy, never the whole logits
CLI_LOSSES = {"standard": "auto", "fused": "fused"}  # `--loss`: the stack's own loss, or fused linear cross-entropy
CHECKPOINTING = ("none", "full", "selective")  # selective: matmul/attention outputs saved, the rest recomputed (op-level)
DEVICES = ("cuda", "cpu")
STACKS = ("hf", "torchtune", "litgpt")
# Over several GPUs: FSDP FULL_SHARD (= DeepSpeed ZeRO-3) shards params, grads and states;
# SHARD_GRAD_OP (= ZeRO-2) keeps the params unsharded from forward through backward; DDP shards nothing.
SHARDING = ("full", "grad-op", "ddp")
SHARDING_ALIASES = {"zero3": "full", "full-shard": "full", "full_shard": "full", "zero2": "grad-op",
                    "shard-grad-op": "grad-op", "shard_grad_op": "grad-op"}  # fmt: skip
OFFLOAD = ("none", "params", "optimizer", "both", "activations")  # joined by '+': optimizer+activations
OFFLOAD_PARTS = {"none": (), "params": ("params",), "optimizer": ("optimizer",), "both": ("params", "optimizer"),
                 "activations": ("activations",)}  # fmt: skip


def parse_offload(text: str) -> str:
    """'optimizer+activations' → its canonical spelling; a bad part is a one-line error naming the accepted ones."""
    parts: list[str] = []
    for p in str(text).strip().lower().split("+"):
        if p not in OFFLOAD_PARTS:
            raise bad_choice("--offload", text, OFFLOAD + ("optimizer+activations (any '+' combination)",))
        parts += OFFLOAD_PARTS[p]
    parts = [p for p in ("params", "optimizer", "activations") if p in parts]
    return "+".join(parts) or "none"
_STACK_LOSS = {"hf": "full", "torchtune": "chunked", "litgpt": "full"}


@dataclass(frozen=True)
class Setup:
    """One training configuration. Defaults describe the harness's stack (transformers + peft)."""

    arch: Arch
    method: str = "lora"
    rank: int = 16
    targets: str = "all-linear"  # a preset, or module names joined by '+' (may include lm_head)
    batch_size: int = 1
    seq_len: int = 512  # padded length of the longest batch (where the peak happens)
    grad_checkpointing: bool = False
    precision: str = "bf16"
    optimizer: str = "adamw"
    gpus: int = 1  # > 1: data parallel over this many GPUs (see sharding)
    grad_accum: int = 1  # > 1 keeps gradients alive through the next forward
    device: str = "cuda"
    adapter_dtype: str = "auto"  # auto: fp32 on hf (peft upcasts adapters), bf16 on torchtune/litgpt
    lora_dropout: float = 0.05  # > 0 saves a dropout output + mask per targeted module
    attention: str = "sdpa"  # sdpa/eager expand k, v to every head; flash (FA2) does not; eager saves the softmax
    loss: str = "auto"  # auto: the stack's; full (fp32 upcast) | chunked (torchtune) | lowp (bf16 cross-entropy)
    loss_chunk_tokens: int = 0  # fused: tokens per chunk; 0 = Liger's rule (the harness's train.loss=chunked: 1024)
    optimizer_in_backward: bool = False  # torchtune's fused step: no full gradient buffer
    fused_optimizer: bool = False  # AdamW(fused=True): no foreach temporary copy of the params
    compile: bool = False  # torch.compile: the loss keeps only compute-dtype logits, recomputes the rest
    keep_logits: bool = False  # the loop still holds the model output during backward (HF Trainer drops it)
    stack: str = "hf"
    sharding: str = "full"  # with gpus > 1
    offload: str = "none"  # CPU offload: params, optimizer, activations joined by '+' (both = params+optimizer)
    checkpointing: str = ""  # none | full | selective; "" follows grad_checkpointing (True = full)
    float8: bool = False  # torchao Float8Linear: fp8 matmuls; FSDP all-gathers weights in fp8
    bnb_saves_input: bool | None = None  # MatMul4Bit keeps its input A (bitsandbytes < 0.45); None: by stack
    prepare_kbit: bool | None = None  # None: QLoRA on the hf stack runs prepare_model_for_kbit_training
    double_quant: bool = True  # NF4 absmax quantized again (bnb_4bit_use_double_quant)
    # MoE: True adapts every routed expert's MLP too (PEFT's target_parameters on transformers >= 5's 3-D
    # expert weights; per-expert nn.Linear on transformers 4). False: what "all-linear" reaches on
    # transformers >= 5, whose fused experts are no nn.Linear: attention, dense and shared-expert MLPs.
    lora_experts: bool = False
    kernels: tuple = ()  # fused kernels (harness.kernels): rms_norm, swiglu, rope, lora; --kernels liger / unsloth

    def __post_init__(self):
        checks = (("--method", self.method, METHODS), ("--precision", self.precision, PRECISIONS),
                  ("--optimizer", self.optimizer, OPTIMIZERS), ("--attention", self.attention, ATTENTION),
                  ("--loss", self.loss, LOSSES), ("--device", self.device, DEVICES),
                  ("--adapter-dtype", self.adapter_dtype, ("auto", "bf16", "fp32")), ("--stack", self.stack, STACKS),
                  ("--sharding", self.sharding, SHARDING), ("--checkpointing", self.checkpointing or "none", CHECKPOINTING))  # fmt: skip
        object.__setattr__(self, "offload", parse_offload(self.offload))
        if self.checkpointing == "full":
            object.__setattr__(self, "grad_checkpointing", True)
        if self.float8 and self.method == "qlora":
            raise AdvisorError("--float8: QLoRA's base weights are 4-bit NF4, not float8-castable linears; use --method lora or full")
        if self.float8 and self.precision == "fp32":
            raise AdvisorError("--float8: float8 matmuls run under bf16 compute; use --precision bf16 or bf16-mixed")
        for flag, value, choices in checks:
            if value not in choices:
                raise bad_choice(flag, value, choices)
        for flag, value, low in (("--rank", self.rank, 1), ("--batch-size", self.batch_size, 1),
                                 ("--seq-len", self.seq_len, 1), ("--gpus", self.gpus, 1),
                                 ("--grad-accum", self.grad_accum, 1)):  # fmt: skip
            if not isinstance(value, int) or value < low:
                raise AdvisorError(f"{flag}: '{value}' must be an integer >= {low}")
        try:
            object.__setattr__(self, "kernels", parse_kernels(self.kernels))
        except ValueError as e:
            raise AdvisorError(f"--kernels: {e}") from None
        if not 0 <= self.lora_dropout < 1:
            raise AdvisorError(f"--lora-dropout: '{self.lora_dropout}' must be in [0, 1)")
        if self.offload != "none" and self.device == "cpu":
            raise AdvisorError("--offload: CPU offload needs --device cuda")
        self.target_modules  # validates the targets

    @property
    def ckpt(self) -> str:
        """Activation checkpointing: none | full | selective."""
        if self.grad_checkpointing:
            return "full"
        return "selective" if self.checkpointing == "selective" else "none"

    @property
    def adapts_experts(self) -> bool:
        """Whether LoRA reaches the routed experts: ``lora_experts``, where peft can. On the hf stack peft's
        expert mapping (transformers >= 5's stacked experts, through ParamWrapper) covers Mixtral, Qwen-MoE
        and the like, not gpt-oss's experts (``experts_fused``: listed on a built model, none adapted)."""
        return self.lora_experts and not (self.arch.experts_fused and self.stack == "hf")

    @property
    def offloads(self) -> tuple[str, ...]:
        return () if self.offload == "none" else tuple(self.offload.split("+"))

    @property
    def adapted(self) -> bool:
        return self.method != "full"

    @property
    def target_modules(self) -> tuple[str, ...]:
        if not self.adapted:
            return ()
        if self.targets in TARGET_PRESETS:
            return TARGET_PRESETS[self.targets]
        out: list[str] = []
        for p in self.targets.split("+"):
            if p in TARGET_PRESETS:
                out += TARGET_PRESETS[p]
            elif p in LINEAR_NAMES or p == "lm_head":
                out.append(p)
            else:
                raise AdvisorError(
                    f"--targets: '{self.targets}' is not {', '.join(TARGETS)} or module names "
                    f"({', '.join(LINEAR_NAMES)}, lm_head) joined by '+'"
                )
        return tuple(dict.fromkeys(out))

    @property
    def loss_kind(self) -> str:
        return _STACK_LOSS[self.stack] if self.loss == "auto" else self.loss

    @property
    def holds_logits(self) -> bool:
        """The loop still references the logits during backward (peft's own loop, litgpt's chunk list)."""
        return self.keep_logits or self.stack == "litgpt"

    @property
    def kbit_prep(self) -> bool:
        """QLoRA through peft's prepare_model_for_kbit_training (HF stack): non-4-bit params in fp32."""
        if self.method != "qlora":
            return False
        if self.prepare_kbit is None:  # TRL skips it for sharded QLoRA: FSDP needs one dtype per flat parameter
            return self.stack == "hf" and not self.sharded
        return self.prepare_kbit

    @property
    def bnb_keeps_input(self) -> bool:
        """bitsandbytes before 0.45 kept a 4-bit matmul's input A for backward (``ctx.tensors = (A, B)``);
        later releases keep only the packed weight. litgpt's published QLoRA tables (2023) ran the former."""
        if self.method != "qlora":
            return False
        return self.stack == "litgpt" if self.bnb_saves_input is None else self.bnb_saves_input

    @property
    def autocast(self) -> bool:
        """bf16 compute by torch.autocast (HF Trainer's bf16=True, the harness): matmuls cast their inputs.
        ``bf16-true`` (a model loaded in bf16 and trained without the Trainer's bf16 flag) has none."""
        return self.stack == "hf" and self.precision not in ("fp32", "bf16-true")

    @property
    def sharded(self) -> bool:
        """States sharded over the GPUs (FSDP either mode, ZeRO-2/3)."""
        return self.gpus > 1 and self.sharding != "ddp"

    # bytes per element
    @property
    def act_bytes(self) -> int:
        return 4 if self.precision == "fp32" else 2

    @property
    def weight_bytes(self) -> int:
        """Base weights as stored: bf16-mixed keeps fp32 masters."""
        return 2 if self.precision in ("bf16", "bf16-true") else 4

    @property
    def adapter_bytes(self) -> int:
        if self.adapter_dtype == "auto":
            return 4 if self.stack == "hf" else self.act_bytes
        return 2 if self.adapter_dtype == "bf16" else 4


@dataclass(frozen=True)
class StackOptions:
    """The stack options `estimate` and `recommend` share (`--loss`, `--checkpointing`, `--offload`,
    `--precision`, `--float8`, `--lora-experts`, `--kbit-prep`, `--kernels`); ``checkpointing`` None lets
    `recommend` choose, ``kbit_prep`` None the stack's habit."""

    loss: str = "auto"
    checkpointing: str | None = None
    offload: str = "none"
    precision: str = "bf16"
    float8: bool = False
    lora_experts: bool = False
    kbit_prep: bool | None = None
    kernels: tuple = ()

    def setup_kwargs(self, ckpt: bool) -> dict:
        """Setup keywords; ``ckpt``: recommend's own choice, used when no --checkpointing was given."""
        mode = self.checkpointing or ("full" if ckpt else "none")
        return {"loss": self.loss, "checkpointing": mode, "grad_checkpointing": mode == "full", "offload": self.offload,
                "precision": self.precision, "float8": self.float8, "lora_experts": self.lora_experts,
                "prepare_kbit": self.kbit_prep, "kernels": self.kernels}  # fmt: skip

    def describe(self) -> str:
        parts = [f"--loss {'fused' if self.loss == 'fused' else 'standard'}"] if self.loss != "auto" else []
        parts += [f"--checkpointing {self.checkpointing}"] if self.checkpointing else []
        parts += [f"--offload {self.offload}"] if self.offload != "none" else []
        parts += [f"--precision {self.precision}"] if self.precision != "bf16" else []
        parts += ["--float8"] if self.float8 else []
        parts += ["--lora-experts"] if self.lora_experts else []
        parts += [] if self.kbit_prep is None else ["--kbit-prep" if self.kbit_prep else "--no-kbit-prep"]
        parts += [f"--kernels {'+'.join(self.kernels)}"] if self.kernels else []
        return " ".join(parts)


def setup_for_run(run: "Run") -> tuple[Setup | None, str]:
    """The Setup a harness run (``inputs.harness_runs.Run``) trained with, or (None, why it cannot be modelled)."""
    if run.arch is None:
        return None, "no model_arch (or config.model.arch) in the record"
    method = run.method
    if method in ("grpo", "dpo"):
        return None, f"{method}: rollouts / paired batches are outside the SFT memory model"
    if method == "fsdp":
        method = run.inner or "full"
    if method not in SFT_METHODS:
        return None, f"method '{run.method}' unknown to the memory model"
    if run.dtype == "fp32" or (run.dtype == "auto" and run.device == "cpu"):
        precision = "fp32"
    else:
        precision = "bf16"  # bf16 and fp16 cost the same bytes
    seq, _ = run.peak_seq_len
    targets = run.targets
    try:
        setup = Setup(
            arch=run.arch, method=method, rank=int(run.rank or 16), targets=targets, batch_size=run.batch_size,
            seq_len=seq, grad_checkpointing=run.checkpointing == "full", checkpointing=run.checkpointing, precision=precision,
            optimizer=run.optimizer if run.optimizer in OPTIMIZERS else "adamw",
            gpus=max(1, run.world_size), grad_accum=run.grad_accum, device="cpu" if run.device == "cpu" else "cuda",
            lora_dropout=run.dropout if method != "full" else 0.0, kernels=run.kernels,
            # train.loss=chunked: the head + cross-entropy a chunk at a time, recomputed in backward
            **({"loss": "fused", "loss_chunk_tokens": LOSS_CHUNK_TOKENS} if run.loss == "chunked" else {}),
        )  # fmt: skip
    except AdvisorError as e:
        return None, str(e)
    return setup, ""
