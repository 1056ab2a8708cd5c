"""Activation offload in the simulation: what ``torch.autograd.graph.save_on_cpu`` does to GPU memory.

``save_on_cpu`` packs every tensor autograd saves into a host copy (the device tensor is then
freed when the forward drops it) and unpacks it in backward as a fresh device copy. The simulation
runs on fake CPU tensors, where a "host copy" would be counted like any other tensor, so the
pack keeps no tensor at all, only shape and dtype (host memory is not the GPU's peak), and the
unpack allocates the device copy backward needs: the same GPU bytes at every moment as the real hooks.
"""

from __future__ import annotations

import torch


def _pack(t: torch.Tensor):
    return (t.shape, t.dtype, t.stride(), t.device)


def _unpack(packed) -> torch.Tensor:
    shape, dtype, stride, device = packed
    return torch.empty_strided(shape, stride, dtype=dtype, device=device)


def saved_to_host():
    """Context: saved tensors leave the device in forward and come back one by one in backward."""
    return torch.autograd.graph.saved_tensors_hooks(_pack, _unpack)
