"""The operators of the simulated training step, each with its FLOPs and the bytes it moves.

The same fake-tensor step as ``step.run`` (the model transformers builds, the harness method's
``prepare``, its loss, checkpointing, the Trainer's optimizer), without the memory tracker, under
``OpCounter``: a ``TorchDispatchMode`` that sees every aten operator the step dispatches.

Per operator:
- FLOPs from PyTorch's own formulas (``torch.utils.flop_counter.flop_registry``: mm, addmm, bmm,
  the SDPA kernels, convolutions); the CPU flash-attention kernels a fake CPU step dispatches to
  (``_scaled_dot_product_flash_attention_for_cpu`` and its backward) by the same SDPA formulas;
- bytes = every input tensor read once + every output written once, as
  ``torch.utils._runtime_estimation.get_num_bytes`` counts them (a broadcast dimension is read
  once) — what ``torch.distributed._tools.runtime_estimator.RuntimeEstimator``'s roofline mode
  counts. That estimator itself asserts ``torch.cuda.is_available()`` (it reads the device's
  peak from the running GPU), so on a CPU machine the same count is made here and priced from a
  datasheet (``pricing``);
- views, metadata and tensor creation without a kernel (``empty``, ``detach``, ``t``, ``view`` …)
  are not operators on the device and are skipped (``_IGNORE_OPS`` + every aliasing overload).

Phases: ``micro`` (one micro-batch's forward and backward, repeated ``grad_accum`` times) and
``optimizer`` (the Trainer's gradient clipping at norm 1.0 and ``opt.step()``, once). The optimizer is traced on its second step (its states exist
then), and runs as on a GPU: ``foreach`` (torch's default on CUDA) where the Trainer did not pick
``fused``; a fake CPU step would otherwise run the per-parameter loop.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.utils._pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._runtime_estimation import _IGNORE_OPS, get_num_bytes
from torch.utils.flop_counter import flop_registry, sdpa_backward_flop_count, sdpa_flop_count

aten = torch.ops.aten
NO_KERNEL = {aten.empty, aten.empty_strided, aten.empty_like, aten.new_empty, aten.new_empty_strided, aten.lift_fresh,
             aten.detach, aten.alias, aten._local_scalar_dense, aten.set_, aten.resize_}  # fmt: skip
CPU_FLASH = aten._scaled_dot_product_flash_attention_for_cpu
CPU_FLASH_BWD = aten._scaled_dot_product_flash_attention_for_cpu_backward
ATTENTION = {CPU_FLASH, CPU_FLASH_BWD, *(p for p in flop_registry if "attention" in str(p))}
MATMUL = {aten.mm, aten.addmm, aten.bmm, aten.baddbmm, aten._scaled_mm}


@dataclass
class Op:
    name: str
    kind: str  # matmul | attention | memory (elementwise, reductions, copies, the optimizer's kernels)
    flops: float
    bytes: float
    phase: str
    tensors: int = 1  # tensors a foreach/fused kernel walks (one launch per group on the device)
    low_precision: bool = True  # a matmul in 16 bits (tensor cores at the bf16 rate) or in fp32
    reads: tuple = ()  # (storage, bytes) of each input: what a fusing compiler can keep on chip
    writes: tuple = ()  # (storage, bytes) of each output (an in-place op's output is its input's storage)


def _attention_flops(packet, args, out) -> float:
    if packet is CPU_FLASH:
        q, k, v = args[:3]
        return float(sdpa_flop_count(q.shape, k.shape, v.shape))
    if packet is CPU_FLASH_BWD:
        grad_out, q, k, v = args[:4]
        return float(sdpa_backward_flop_count(grad_out.shape, q.shape, k.shape, v.shape))
    return 0.0


class OpCounter(TorchDispatchMode):
    """Records one ``Op`` per device kernel the step dispatches."""

    def __init__(self):
        super().__init__()
        self.ops: list[Op] = []
        self.phase = "micro"
        self.recording = True
        self._alive: list = []  # outputs kept referenced, so no storage address is reused within the trace

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func._overloadpacket
        if not self.recording or func.namespace == "prim" or packet in _IGNORE_OPS or packet in NO_KERNEL or func.is_view:
            return out
        ins = [t for t in pytree.tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        outs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor)]
        if not ins and not outs:
            return out
        moved = sum(get_num_bytes(t) for t in ins) + sum(get_num_bytes(t) for t in outs if not _aliases_input(t, ins))
        if packet in flop_registry:
            flops = float(flop_registry[packet](*args, **kwargs, out_val=out))
        else:
            flops = _attention_flops(packet, args, out)
        kind = "attention" if packet in ATTENTION else "matmul" if packet in MATMUL else "memory"
        low = all(t.dtype in (torch.bfloat16, torch.float16) for t in ins[:2]) if kind == "matmul" else True
        tensors = len(ins) if str(packet).startswith("aten._foreach") or "fused" in str(packet) else 1
        reads = tuple((_key(t), get_num_bytes(t)) for t in ins)
        writes = tuple((_key(t), get_num_bytes(t)) for t in outs)
        self._alive.extend(outs)
        self.ops.append(Op(str(packet), kind, flops, float(moved), self.phase, tensors, low, reads, writes))
        return out


def _key(t: torch.Tensor) -> int:
    return t.untyped_storage()._cdata


def _aliases_input(t: torch.Tensor, ins: list) -> bool:
    """An in-place op returns its input: its bytes are written, not written again as a new output."""
    return any(t is i for i in ins)


def gpu_like_optimizer(opt) -> None:
    """torch's AdamW/SGD on CUDA default to ``foreach``; on fake CPU tensors they would loop per parameter."""
    for group in opt.param_groups:
        if "foreach" in group and not group.get("fused"):
            group["foreach"] = True


def trace(config: dict, spec) -> list[Op]:
    """The operators of one micro-batch (forward + backward) and of one optimizer step of ``spec``."""
    from torch._subclasses.fake_tensor import FakeTensorMode, unset_fake_temporarily

    from advisor.simulate import build, step

    model = step.prepared_model(config, spec)
    counter = OpCounter()
    with FakeTensorMode(allow_non_fake_inputs=True):
        build.fakeify(model, spec.compute_dtype)
        batch = step.padded_batch(model.get_input_embeddings().num_embeddings, spec)
        trainable = [p for p in model.parameters() if p.requires_grad]
        with unset_fake_temporarily():
            opt = step.optimizer_for(trainable, spec.optimizer, spec)
        gpu_like_optimizer(opt)
        with counter:
            loss = step.step_loss(model, batch, spec)
            loss.backward()
            del loss
            counter.recording = False
            opt.step()  # the first step creates the states; the second is the one every later step repeats
            counter.recording, counter.phase = True, "optimizer"
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)  # the Trainer's max_grad_norm (1.0 by default)
            opt.step()
    return counter.ops


def totals(ops: list[Op]) -> dict:
    """FLOPs, bytes and kernel count by phase and kind (for the report and the tests)."""
    out: dict = {}
    for op in ops:
        d = out.setdefault(op.phase, {}).setdefault(op.kind, {"flops": 0.0, "bytes": 0.0, "ops": 0})
        d["flops"] += op.flops
        d["bytes"] += op.bytes
        d["ops"] += 1
    return out
