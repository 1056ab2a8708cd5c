"""Which points run at once, on what: GPUs and CPU cores handed out so that no two points share one.

The local launcher (``harness/sweep/local.py``) asks this module three things:

- **the machine**: the visible GPUs (``CUDA_VISIBLE_DEVICES`` order) and the cores this process may
  use (its affinity). ``TUNEBENCH_VISIBLE_GPUS=0,1,2,3`` declares fake GPUs for tests and demos;
  it is honoured only where ``torch.cuda.is_available()`` is false, so it cannot take effect by
  accident on a real CUDA machine (there it is ignored with a warning).
- **the slots**: ``launcher.parallel=auto|N`` points at once. With GPUs, ``auto`` = one point per
  GPU and a point takes ``method.world_size`` GPUs (FSDP) at once; on CPU, ``auto`` = 1 (so
  throughput stays comparable with earlier records) and ``N`` splits the cores into N blocks.
- **the order**: with more than one slot, longest expected first (in GPU-seconds; one at a time,
  the preset's order), launched strictly in that order: a
  point that needs k GPUs waits until k are free and nothing queued behind it jumps ahead, so a
  2-GPU point is never starved by a stream of 1-GPU points.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from harness.errors import UserError
from harness.spec import RunSpec
from harness.sweep.plan import Point

FAKE_GPUS_ENV = "TUNEBENCH_VISIBLE_GPUS"
DEFAULT_MODEL = "smollm2-135m"  # the default model: a model the advisor's catalog does not know is costed as it
TINY_VOCAB = 1024  # the tiny byte-level tokenizer's ids (harness/models.py); a tiny arch may not name it


@dataclass(frozen=True)
class Machine:
    gpus: tuple[str, ...]  # GPU ids as CUDA_VISIBLE_DEVICES names them; () → a CPU sweep
    cpus: tuple[int, ...]  # cores this runner may use
    fake_gpus: bool = False  # declared with TUNEBENCH_VISIBLE_GPUS on a machine without CUDA


def _ids(text: str, what: str) -> tuple[str, ...]:
    ids = tuple(t.strip() for t in text.split(",") if t.strip())
    if not ids or len(set(ids)) != len(ids):
        raise UserError(f"{what}='{text}': expected distinct GPU ids separated by commas, e.g. 0,1,2,3")
    return ids


def detect_machine(env=None, cuda_available: bool | None = None, cuda_count: int | None = None) -> Machine:
    """The GPUs and cores a sweep may use here (``cuda_*`` given by tests; read from torch otherwise)."""
    env = os.environ if env is None else env
    cpus = tuple(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else tuple(range(os.cpu_count() or 1))
    if cuda_available is None:
        import torch

        cuda_available = torch.cuda.is_available()
        cuda_count = torch.cuda.device_count() if cuda_available else 0
    if cuda_available:
        if env.get(FAKE_GPUS_ENV):
            print(f"harness: warning: {FAKE_GPUS_ENV} is ignored: this machine has CUDA GPUs", file=sys.stderr)
        visible = env.get("CUDA_VISIBLE_DEVICES")
        ids = _ids(visible, "CUDA_VISIBLE_DEVICES")[:cuda_count] if visible else tuple(str(i) for i in range(cuda_count or 0))
        return Machine(ids, cpus)
    if env.get(FAKE_GPUS_ENV):
        return Machine(_ids(env[FAKE_GPUS_ENV], FAKE_GPUS_ENV), cpus, fake_gpus=True)
    return Machine((), cpus)


def slot_count(parallel, machine: Machine) -> int:
    """``launcher.parallel`` → how many points may run at once (one-line UserError if impossible)."""
    if parallel in (None, "auto"):
        return max(1, len(machine.gpus))
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise UserError(f"launcher.parallel must be auto or a positive integer (got {parallel!r})")
    if machine.gpus and parallel > len(machine.gpus):
        raise UserError(f"launcher.parallel={parallel} but {len(machine.gpus)} GPU(s) are visible: "
                        f"a GPU never holds two points; use launcher.parallel=auto")
    if not machine.gpus and parallel > len(machine.cpus):
        raise UserError(f"launcher.parallel={parallel} but this process may use {len(machine.cpus)} CPU core(s): "
                        f"each point needs at least one core of its own")
    return parallel


def core_blocks(cpus: tuple[int, ...], n: int) -> list[tuple[int, ...]]:
    """``cpus`` cut into ``n`` contiguous blocks, sizes differing by at most one. With fewer cores
    than blocks (8 fake GPUs on 2 cores) blocks repeat cores: that sharing is then in the record."""
    if len(cpus) < n:
        return [(cpus[i % len(cpus)],) for i in range(n)]
    size, extra = divmod(len(cpus), n)
    out, start = [], 0
    for i in range(n):
        end = start + size + (1 if i < extra else 0)
        out.append(tuple(cpus[start:end]))
        start = end
    return out


@dataclass(frozen=True)
class Slot:
    """What one running point holds."""

    index: int  # 0 … parallel-1, lowest free first
    gpus: tuple[str, ...]
    cpus: tuple[int, ...]
    units: tuple[int, ...]  # indices into the scheduler's units (GPUs, or CPU core blocks)


def need(point: Point, machine: Machine) -> int:
    """Units a point holds: ``method.world_size`` GPUs (FSDP ranks per node), else one; on CPU one
    core block (an FSDP job's ranks share their point's cores, as they share the machine today)."""
    return max(1, point.spec.method.world_size) if machine.gpus else 1


# ---------------------------------------------------------------- expected time


def flop_arch(model) -> dict:
    """The shape a point's FLOPs are counted on (``advisor.facts.flops_per_token``'s arch dict): the
    config's own (tiny and cost-only models; unnamed fields at Llama's defaults and the tiny
    tokenizer's vocabulary), else the advisor catalog's entry for the model's hub id or name
    (``smollm2-135m``), else the default model's."""
    arch = dict(model.arch or {})
    if "hidden_size" in arch:
        heads = arch.get("num_attention_heads", 1)
        return {"num_hidden_layers": 1, "intermediate_size": 4 * arch["hidden_size"], "num_attention_heads": heads,
                "num_key_value_heads": heads, "vocab_size": TINY_VOCAB, **arch}
    from advisor.errors import AdvisorError
    from advisor.inputs.catalog import resolve_model

    for name in (model.name_or_path, model.name, DEFAULT_MODEL):
        try:
            return resolve_model(name).arch.to_record()
        except (AdvisorError, TypeError):  # unknown to the catalog, or no name_or_path
            continue
    raise AssertionError(f"the default model {DEFAULT_MODEL} is missing from advisor/inputs/catalog.py")


# Relative speeds for ordering only (advisor/decide/rules.py's practitioners' figures): QLoRA dequantises
# every frozen matmul (25-40% slower than LoRA), DoRA recomputes the weight norm (~+25% time).
QLORA_SPEED = 0.70
DORA_SPEED = 0.80


def expected_cost(spec: RunSpec) -> float:
    """FLOPs a point is expected to spend: a relative cost for ordering, turned into seconds once
    points of the same sweep have been timed. Training per token ``advisor.facts.flops_per_token``
    (6N + attention when the method trains the base, 4N when it is frozen; adapters are left out),
    the guides' QLoRA/DoRA slowdowns, and from the method table: the sequences per example (DPO's
    pairs) and the rollouts a generating method samples; scoring base and tuned, 2N per token."""
    from advisor.facts import flops_per_token, matmul_params
    from harness.method_table import capabilities, options

    t, m = spec.train, spec.method
    caps = capabilities(m.name, m.inner)
    steps = t.max_steps if t.max_steps > 0 else t.epochs * spec.task.n_train / (t.batch_size * t.grad_accum)
    tokens = steps * t.batch_size * t.grad_accum * t.max_seq_len * caps.sequences_per_example
    arch = flop_arch(spec.model)
    train = tokens * flops_per_token(arch, t.max_seq_len, trains_base=bool(caps.trains_base))
    if m.quantize:
        train /= QLORA_SPEED
    if m.use_dora:
        train /= DORA_SPEED
    if caps.generates:  # sample every rollout (about as slow again as training on it)
        train *= 2 * int(options(m.name, m.options)["num_generations"]) / max(1, t.batch_size)
    scored = (spec.eval.limit or spec.task.n_test) if spec.eval.enabled and spec.model.scored else 0
    return train + 2 * scored * t.max_seq_len * 2 * matmul_params(arch)


def expected_seconds(points: list[Point], measured: dict[int, float]) -> dict[int, float]:
    """Seconds per point: its last recorded wall time where there is one, else its FLOPs at the
    seconds-per-FLOP of the measured points (the ratio of sums), else the FLOPs themselves (the
    order is then right, the unit is not)."""
    cost = {p.index: expected_cost(p.spec) for p in points}
    timed = [i for i in measured if i in cost]
    rate = sum(measured[i] for i in timed) / sum(cost[i] for i in timed) if timed else 1.0
    return {i: measured.get(i, c * rate) for i, c in cost.items()}


# ---------------------------------------------------------------- the scheduler


class Scheduler:
    """Hands out slots in order; never gives one unit (GPU or core block) to two running points."""

    def __init__(self, points: list[Point], machine: Machine, parallel: int, expected: dict[int, float]):
        self.machine, self.parallel = machine, parallel
        self.cpu_blocks = core_blocks(machine.cpus, len(machine.gpus) or parallel)
        self.free_units = set(range(len(machine.gpus) or parallel))
        self.free_slots = set(range(parallel))
        for p in points:
            if need(p, machine) > len(self.free_units):
                raise UserError(f"point '{p.label}' needs {need(p, machine)} GPUs (method.world_size) "
                                f"but {len(machine.gpus)} are visible")
        # Longest first in unit-seconds: the multi-GPU and slow points go out while the most is free.
        # One at a time, order cannot shorten the sweep: the preset's order is kept, as written.
        self.queue = sorted(points, key=lambda p: (-need(p, machine) * expected[p.index] if parallel > 1 else 0, p.index))

    def __len__(self) -> int:
        return len(self.queue)

    def launches(self) -> list[tuple[Point, Slot]]:
        """Points to start now, each with its slot: the queue's head while it fits."""
        out = []
        while self.queue and self.free_slots:
            k = need(self.queue[0], self.machine)
            if k > len(self.free_units):
                break  # the head waits for k units; nothing jumps ahead of it
            units = tuple(sorted(self.free_units)[:k])
            self.free_units -= set(units)
            index = min(self.free_slots)
            self.free_slots.remove(index)
            gpus = tuple(self.machine.gpus[u] for u in units) if self.machine.gpus else ()
            cpus = tuple(sorted({c for u in units for c in self.cpu_blocks[u]}))
            out.append((self.queue.pop(0), Slot(index, gpus, cpus, units)))
        return out

    def release(self, slot: Slot) -> None:
        assert not set(slot.units) & self.free_units and slot.index not in self.free_slots, "released twice"
        self.free_units |= set(slot.units)
        self.free_slots.add(slot.index)

    def drop(self) -> list[Point]:
        """Empty the queue (Ctrl-C): the points that will not start."""
        left, self.queue = self.queue, []
        return left


def child_env(slot: Slot, machine: Machine, parallel: int, shared_with: int) -> tuple[dict, dict]:
    """(environment for the point's process, its ``execution`` record section)."""
    execution = {"concurrency": parallel, "slot": slot.index, "gpus": list(slot.gpus), "cpus": list(slot.cpus),
                 "shared_with": shared_with}
    if machine.fake_gpus:
        execution["fake_gpus"] = True  # declared with TUNEBENCH_VISIBLE_GPUS: the point ran on the CPU
    env = {"TUNEBENCH_EXECUTION": _json(execution)}
    if parallel > 1 or machine.gpus:  # a lone CPU point keeps the whole machine, as a sequential sweep always did
        threads = str(len(slot.cpus))  # one compute thread per core held: no oversubscription inside a slot
        env.update(OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
    if slot.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(slot.gpus)
    return env, execution


def _json(data: dict) -> str:
    import json

    return json.dumps(data, separators=(",", ":"))
