"""What the advisor answers with: the inputs it was asked about, and the recipe it recommends.

Plain data, shared by the decision procedure (``procedure``), the evidence pass (``evidence``, which
adds ``Step``s) and the renderers; nothing here decides anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from advisor.decide.sizing import Plan
from advisor.inputs.catalog import GpuBudget, Model
from advisor.memory.setup import StackOptions

CAPABILITIES = ("classification", "extraction", "instruction", "style", "domain", "reasoning", "code", "alignment")
AUDITABILITY = ("low", "standard", "high")
DEFAULT_SEQ_LEN = 512


@dataclass(frozen=True)
class Inputs:
    gpu: GpuBudget
    examples: int | None = None
    capability: str = "instruction"
    auditability: str = "standard"
    model: Model | None = None
    seq_len: int = DEFAULT_SEQ_LEN
    seq_len_given: bool = False
    verifiable_reward: bool = False
    preference_pairs: int | None = None
    stack: StackOptions = StackOptions()  # --loss, --checkpointing, --offload, --precision, --float8, --lora-experts
    hours: float = 24.0  # time budget: the whole run, judged at the time estimate's high end


@dataclass(frozen=True)
class Step:
    title: str
    text: str
    rules: tuple[str, ...] = ()


@dataclass(frozen=True)
class Alternative:
    option: str
    peak_gb: float | None
    fits: bool | None
    why_not: str


@dataclass
class Recipe:
    method: str  # full | lora | qlora | dora | fsdp | grpo | dpo | none
    advice: str  # one line
    inputs: Inputs
    plan: Plan | None = None
    inner: str | None = None
    rank: int | None = None
    alpha: int | None = None
    dropout: float | None = None
    lr: float | None = None
    epochs: float | None = None
    weight_decay: float | None = None
    precision: str = "bf16"
    feasible: bool = True
    time_per_epoch_s: float | None = None
    time_per_epoch_range_s: tuple[float, float] | None = None  # (low, high) of the time model; a measurement gives (t, t)
    time_basis: str = ""
    steps: list[Step] = field(default_factory=list)
    alternatives: list[Alternative] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    evidence: list[dict] = field(default_factory=list)
    forgetting: object | None = None  # advisor.decide.forgetting.Forgetting measured in matching records
    hours_high: float | None = None  # the whole run's time at the estimate's high end, hours

    @property
    def rules(self) -> list[str]:
        seen: dict[str, None] = {}
        for s in self.steps:
            seen.update(dict.fromkeys(s.rules))
        return list(seen)

    @property
    def model(self) -> Model | None:
        return self.plan.model if self.plan else None
