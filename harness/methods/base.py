"""The small contract every fine-tuning method fulfils.

``harness.run`` owns everything methods share (loading, memory, scoring, the record). A method
gets what it needs and nothing else: the method spec, the train spec and the built task.

    capabilities                       → what it is (trains base weights, needs a reference, …), as data
    check(method, train, task)         → one-line UserError for what cannot work, before anything loads
    load_kwargs(method)                → extra arguments for models.load (e.g. quantize="4bit")
    prepare(model, method, train)      → the model to train (adapters attached, parameters frozen)
    fit(model, tok, job, clock, progress) → method-specific metrics (dict)
    ranks(method)                      → processes that train (FSDP: all ranks of all nodes)

Wrappers (fsdp, grpo, dpo) hold an inner method (``method.inner`` = full | lora) and delegate
``prepare`` to it; ``harness.methods.get_method`` composes them, nothing is mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from harness.errors import UserError
from harness.method_table import METHODS, Capabilities
from harness.method_table import options as table_options
from harness.spec import MethodSpec, TrainSpec

if TYPE_CHECKING:
    from harness.spec import RunSpec
    from harness.measure import StepClock
    from harness.tasks.base import Example, Task


@dataclass(frozen=True)
class Job:
    """What a method's ``fit`` works with. ``harness.train``'s helpers read ``train``, ``lr`` and
    ``seed`` from it. ``run`` (the whole RunSpec) is set only for a method that launches its own
    job (``capabilities.launches_job``): its workers load the model themselves."""

    method: MethodSpec
    train: TrainSpec
    task: "Task"
    splits: dict[str, list["Example"]]  # task.splits(), built once per run
    seed: int
    run: "RunSpec | None" = None

    @property
    def lr(self) -> float:
        return float(self.train.lr if self.train.lr is not None else self.method.default_lr)


class Method(Protocol):
    name: str
    capabilities: Capabilities

    def check(self, method: MethodSpec, train: TrainSpec, task: "Task") -> None: ...

    def load_kwargs(self, method: MethodSpec) -> dict: ...

    def prepare(self, model: Any, method: MethodSpec, train: TrainSpec) -> Any: ...

    def fit(self, model: Any, tok: Any, job: Job, clock: "StepClock", progress: Any) -> dict: ...

    def ranks(self, method: MethodSpec) -> int: ...


class Single:
    """Defaults for a method that trains in this process and checks nothing beyond its options."""

    name = ""
    capabilities = Capabilities(trains_base=False)

    def check(self, method: MethodSpec, train: TrainSpec, task: "Task") -> None:
        options(method)

    def load_kwargs(self, method: MethodSpec) -> dict:
        return {}

    def ranks(self, method: MethodSpec) -> int:
        return 1


@dataclass(frozen=True)
class Wrapper(Single):
    """A method around an inner one: the inner method's adapters/weights, the wrapper's training."""

    inner: Method

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return replace(METHODS[self.name].capabilities, trains_base=self.inner.capabilities.trains_base)

    def check(self, method: MethodSpec, train: TrainSpec, task: "Task") -> None:
        if method.quantize and self.inner.capabilities.trains_base:
            raise UserError(f"method.quantize=4bit needs method.inner=lora ({method.name}): a 4-bit base cannot be trained")
        options(method)
        self.inner.check(replace(method, options={}), train, task)  # the inner method's own checks (r set, …)

    def load_kwargs(self, method: MethodSpec) -> dict:
        return self.inner.load_kwargs(method)

    def prepare(self, model: Any, method: MethodSpec, train: TrainSpec) -> Any:
        return self.inner.prepare(model, method, train)


def count_params(model) -> tuple[int, int]:
    """(trainable, total). bitsandbytes packs two 4-bit weights per byte: count them unpacked."""
    trainable = total = 0
    for p in model.parameters():
        n = p.numel()
        if getattr(p, "quant_state", None) is not None or p.__class__.__name__ == "Params4bit":
            n *= 2
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total


def options(method: MethodSpec) -> dict:
    """``method.options`` over the method table's defaults (unknown keys: a one-line error)."""
    return table_options(method.name, method.options)


def weight_bytes(model) -> dict:
    """Bytes the weights occupy: parameters + buffers (what ``get_memory_footprint`` counts) plus
    the 4-bit quantization constants bitsandbytes keeps beside each weight in ``quant_state``
    (absmax per 64 weights, itself 8-bit + fp32 per 256 blocks with double quantization), which
    ``get_memory_footprint`` does not see."""
    def nbytes(t) -> int:
        return t.numel() * t.element_size() if t is not None else 0

    params = sum(nbytes(p) for p in model.parameters())
    buffers = sum(nbytes(b) for b in model.buffers())
    seen: dict[int, int] = {}  # data_ptr → bytes: the code tables may be shared between weights
    for p in model.parameters():
        qs = getattr(p, "quant_state", None)
        if qs is None:
            continue
        parts = [qs.absmax, getattr(qs, "code", None)]
        if getattr(qs, "state2", None) is not None:
            parts += [qs.state2.absmax, qs.state2.code]
        for t in parts:
            if t is not None:
                seen[t.data_ptr()] = nbytes(t)
    quant = sum(seen.values())
    return {"param_bytes": params, "buffer_bytes": buffers, "quant_state_bytes": quant, "total_bytes": params + buffers + quant}
