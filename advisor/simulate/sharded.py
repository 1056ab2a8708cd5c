"""One rank of an FSDP2 step, simulated: ``FSDPMemTracker`` on a fake process group.

As the harness's FSDP worker (``harness/methods/fsdp_worker.py``) shards a model: the method's
``prepare``, then ``fully_shard`` on every decoder layer and on the root, with
``MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32)`` for bf16 compute over fp32 weights
(``--precision bf16-mixed``; pure bf16 weights need no policy). ``--sharding grad-op`` keeps the
gathered parameters from forward to backward (``reshard_after_forward=False``, ZeRO-2).

The process group is PyTorch's fake backend (``FakeStore``, world size N): collectives return at
once and the tracker sees rank 0's tensors (all-gather outputs, reduce-scatter inputs, shards).
Under fake mode an optimizer stepping the sharded DTensor parameters is over-counted (a small
case: 40 MiB against 8 MiB real; 7B: 69-75 GiB per rank), so the optimizer steps each
parameter's local shard, with the shard of its gradient: what one rank's AdamW allocates.
"""

from __future__ import annotations

import torch
from torch.distributed._tools.fsdp2_mem_tracker import FSDPMemTracker

from advisor.errors import AdvisorError
from advisor.simulate.step import StepSpec, amp_policy, optimizer_for, padded_batch, prepared_model, step_loss
from advisor.simulate.mem_tracking import Peaks


class ShardedPeakTracker(Peaks, FSDPMemTracker):
    def __init__(self, mod, optm) -> None:
        FSDPMemTracker.__init__(self, mod, optm)
        self._init_peaks()

    def __enter__(self) -> "ShardedPeakTracker":
        self._gc_off()
        return FSDPMemTracker.__enter__(self)

    def __exit__(self, *args) -> None:
        FSDPMemTracker.__exit__(self, *args)
        self._gc_back()


def _fake_group(world: int):
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.testing._internal.distributed.fake_pg import FakeStore  # registers the "fake" backend

    if dist.is_initialized():
        if dist.get_world_size() == world and dist.get_backend() == "fake":
            return init_device_mesh("cpu", (world,))
        dist.destroy_process_group()
    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=world)
    return init_device_mesh("cpu", (world,))


def _shard(model, s: StepSpec, mesh, sharding: str) -> None:
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) if s.precision == "bf16-mixed" else MixedPrecisionPolicy()
    reshard = sharding != "grad-op"
    for layer in _decoder_layers(model):
        fully_shard(layer, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard)
    fully_shard(model, mesh=mesh, mp_policy=mp, reshard_after_forward=reshard)


def _decoder_layers(model):
    from transformers.modeling_layers import GradientCheckpointingLayer

    layers = [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]
    if not layers:
        raise AdvisorError("--simulate --gpus: no decoder layers found to shard in this model")
    return layers


def run(config: dict, s: StepSpec, world: int, sharding: str = "full") -> dict:
    """Rank 0's peaks over ``s.steps`` FSDP2 steps on ``world`` ranks (bytes, as ``step.run``)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from advisor.simulate.step import counts

    if s.method == "qlora":
        raise AdvisorError("--simulate: QLoRA under FSDP is not simulated (bitsandbytes' 4-bit weights need their own "
                           "FSDP storage setup); use --gpus 1 or the analytic estimate")  # fmt: skip
    mesh = _fake_group(world)
    model = prepared_model(config, StepSpec(**{**s.__dict__, "precision": "fp32" if s.precision == "bf16-mixed" else s.precision}))
    _shard(model, s, mesh, sharding)
    # bf16-mixed: the policy casts to bf16, no autocast (the FSDP worker's loop); bf16: autocast, as the Trainer's bf16=True
    compute = StepSpec(**{**s.__dict__, "precision": "fp32"}) if s.precision == "bf16-mixed" else s
    with FakeTensorMode(allow_non_fake_inputs=True):
        model.to_empty(device="cpu")
        batch = padded_batch(model.get_input_embeddings().num_embeddings, s)
        params = [p for p in model.parameters() if p.requires_grad]
        local = [p._local_tensor for p in params]  # this rank's shards: what its optimizer steps
        opt = optimizer_for(local, s.optimizer, s)
        tracker = ShardedPeakTracker(model, opt)
        tracker.track_inputs(tuple(batch.values()))
        with tracker, amp_policy(s):
            for _ in range(s.steps):
                tracker.phase = None
                tracker.reset_mod_stats()  # FSDPMemTracker refuses a root module's second forward otherwise
                for _ in range(s.grad_accum):
                    loss = step_loss(model, batch, compute)
                    loss.backward()
                    del loss
                    tracker.collect()
                for p, shard in zip(params, local):
                    shard.grad = p.grad._local_tensor if p.grad is not None else None
                opt.step()
                opt.zero_grad(set_to_none=True)
                model.zero_grad(set_to_none=True)
        facts = counts(model, [], opt, s)
    return {"peak": tracker.peak(), "phases": tracker.phase_peaks, **facts,
            "notes": (f"rank 0 of {world} ({sharding} sharding), FSDP2 on a fake process group",)}  # fmt: skip
