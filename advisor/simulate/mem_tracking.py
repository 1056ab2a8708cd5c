"""PyTorch's ``MemTracker``, made usable on a whole training step: global peaks only, by phase.

Two changes to upstream ``torch.distributed._tools.mem_tracker.MemTracker`` (torch 2.13), each
for a snag found by running it on Hugging Face models (the notes are in ``advisor/simulate/__init__``):
- it registers gradient hooks on every parameter it meets, and a frozen one (the LoRA base)
  raises "cannot register a hook on a tensor that doesn't require gradient": frozen parameters
  are tracked as parameters, with no hook;
- ``_update_peak_stats`` walks every tracked module on every operator (a 7B LoRA step: > 300 s);
  only the global peak and the peak of each phase are kept (a 7B step: ~6 s), and the module hooks
  keep no per-module snapshots; a module called twice in one forward (the chunked loss's head)
  or in a second step is allowed (upstream raises "multiple iterative calls");
- its module tracker puts a multi-grad hook on every module output that requires grad; the hook's
  closure and the output's ``grad_fn`` form a reference cycle. An output that backward never
  reaches (DoRA computes ``lora_B(lora_A(eye))`` only for a detached weight norm: an eye and a
  weight-sized product per layer) then stays alive until Python's cyclic GC happens to run, which
  an untracked step never waits for (and cycles around outputs backward does reach hold them past
  backward). With automatic GC on, the peak depends on when it runs (fake and real tensors
  allocate different Python objects): GC is off while tracking, the young generations are
  collected after every module's forward and everything after each backward (``collect``), so
  such tensors die where they would without the tracker, the same way on fake and real tensors;
  a full collection after each decoder layer's forward frees the cycles that outlived two young
  collections (DoRA's eye graphs: a 2-layer Llama-2-7B DoRA step with checkpointing, 1 × 1024, peaked at
  4.57 GiB with young collections only, 3.13 GiB with this).

A phase is where the step is when an operator allocates: ``forward`` (decoder), ``loss`` (the head
and cross-entropy; set by the caller), ``backward`` and ``optimizer step``. Each phase keeps the
snapshot (bytes by kind) at its own peak.
"""

from __future__ import annotations

import gc
import weakref
from copy import deepcopy

import torch
from torch.distributed._tools.mem_tracker import _TOTAL_KEY, MemTracker, _MemRefType

# the trackers' reference types (MemTracker's, FSDPMemTracker's) → the kinds the simulator reports
KINDS = {
    "Parameter": "parameters", "Sharded Param": "parameters", "Unsharded Param": "parameters", "All Gather": "parameters",
    "Buffer": "buffers", "Gradient": "gradients", "Sharded Grad": "gradients", "Unsharded Grad": "gradients",
    "Reduce Scatter": "gradients", "Activation": "activations", "Temp": "temporaries", "Optstate": "optimizer_states",
    "OptState": "optimizer_states", "Other": "other", "Inputs": "other",
}  # fmt: skip
KIND_NAMES = ("parameters", "buffers", "gradients", "activations", "temporaries", "optimizer_states", "other")


class Peaks:
    """Mixed into a memory tracker: global and per-phase peaks only, with deterministic GC."""

    def _init_peaks(self) -> None:
        self.phase: str | None = None  # caller's label (e.g. "loss"); None → derived from the tracker's state
        self.phase_peaks: dict[str, dict] = {}  # phase → {kind: bytes, "total": bytes}

    def _gc_off(self) -> None:
        if self._depth == 0:
            self._gc_was_on = gc.isenabled()
            gc.disable()
            # What exists before the step (the model, torch, transformers: millions of objects) is not
            # the step's garbage: frozen, the collections below scan only what the step creates. Garbage
            # older than the step stays frozen with it; it holds no tensor the tracker counts (those are made
            # inside it), and collecting it first would cost a full scan per step. A caller's own freeze is
            # left as it was.
            self._froze = gc.get_freeze_count() == 0
            if self._froze:
                gc.freeze()
            self._collect = torch.nn.modules.module.register_module_forward_hook(_collect_young)

    def _gc_back(self) -> None:
        if self._depth == 0:
            self._collect.remove()
            if self._froze:
                gc.unfreeze()
            if self._gc_was_on:
                gc.enable()

    def collect(self) -> None:
        """After backward: a full collection. The hooks' cycles around graph nodes were alive (so
        promoted past the young generations) until backward released the graph; what they hold
        (module outputs) would otherwise survive into the optimizer step and the next forward."""
        gc.collect()

    def current_phase(self) -> str:
        if self._in_opt:
            return "optimizer step"
        if self._mod_tracker.is_bw:
            return "backward"
        return self.phase or "forward"

    def _update_peak_stats(self, peak_state) -> None:  # noqa: ARG002 (module-level peaks are not kept)
        for dev, dev_snap in self._curr_mem_snap.items():
            total = dev_snap[_TOTAL_KEY]
            name = self.current_phase()
            if self.phase_peaks.get(name, {}).get("total", -1) < total:
                self.phase_peaks[name] = _named(dev_snap)
            if self._peak_mem.get(dev, 0) < total:
                self._peak_mem[dev] = total
                self._peak_mem_snap[dev] = deepcopy(dev_snap)

    def peak(self) -> dict:
        """{kind: bytes, "total": bytes} at the global peak (one device)."""
        snaps = list(self._peak_mem_snap.values())
        return _named(snaps[0]) if snaps else {"total": 0}


class PeakTracker(Peaks, MemTracker):
    """MemTracker with global and per-phase peaks only; ``phase`` may be set by the caller."""

    def __init__(self) -> None:
        MemTracker.__init__(self)
        self._init_peaks()
        self._seen: weakref.WeakSet = weakref.WeakSet()  # modules whose parameters are tracked

    def __enter__(self) -> "PeakTracker":
        self._gc_off()
        return MemTracker.__enter__(self)

    def __exit__(self, *args) -> None:
        MemTracker.__exit__(self, *args)
        self._gc_back()

    def _pre_fw_hook(self, module, inputs) -> None:
        if module not in self._seen:
            self._seen.add(module)
            self._track_module_params_and_buffers(module, install_grad_hooks=True)
        elif self._mod_tracker.is_bw and self._ac_mod is None:  # recomputation under activation checkpointing
            self._ac_mod = weakref.ref(module)
            self._in_ac = True

    def _post_fw_hook(self, module, inputs, outputs) -> None:
        if self._mod_tracker.is_bw and self._ac_mod is not None and self._ac_mod() is module:
            self._ac_mod = None
            self._in_ac = False

    def _pre_bw_hook(self, module, args) -> None:
        pass

    def _post_bw_hook(self, module, args) -> None:
        pass

    def _track_module_params_and_buffers(self, module: torch.nn.Module, install_grad_hooks: bool = True) -> tuple[int, int]:
        for p in module.parameters():
            self._update_and_maybe_create_winfos(p, _MemRefType.PARAM)
            if p.grad is not None:
                self._update_and_maybe_create_winfos(p.grad, _MemRefType.GRAD)
            if install_grad_hooks and p.requires_grad and self._param_to_grad_hook_handles.get(p, None) is None:
                self._hook(p)  # frozen parameters: tracked, never hooked
        for b in module.buffers():
            self._update_and_maybe_create_winfos(b, _MemRefType.BUFFER)
        return (0, 0)  # upstream's per-module totals: not kept

    def _hook(self, p: torch.Tensor) -> None:
        def grad_hook(grad: torch.Tensor) -> None:
            self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

        self._param_to_grad_hook_handles[p] = (
            p.register_hook(grad_hook),
            p.register_post_accumulate_grad_hook(lambda q: grad_hook(q.grad)),
        )


def _collect_young(module, args, output) -> None:
    """What this module's forward left in cycles: generations 0 and 1 after every module (cheap: young
    objects only); everything after each decoder layer. A cycle that survived two young collections while
    its module was still running (DoRA's ``lora_B(lora_A(eye))``: created by lora_B, released only when
    the DoRA layer returns) is in the old generation by then, and would otherwise live until backward ends."""
    gc.collect(2 if isinstance(module, _decoder_layer_cls()) else 1)


_LAYER_CLS: list = []


def _decoder_layer_cls() -> type:
    if not _LAYER_CLS:
        try:
            from transformers.modeling_layers import GradientCheckpointingLayer
        except ImportError:  # transformers without the common decoder-layer base: young collections only
            GradientCheckpointingLayer = type("NoLayer", (), {})
        _LAYER_CLS.append(GradientCheckpointingLayer)
    return _LAYER_CLS[0]


def _named(dev_snap: dict) -> dict:
    out = dict.fromkeys(KIND_NAMES, 0)
    for ref, n in dev_snap.items():
        if ref != _TOTAL_KEY:
            out[KINDS[getattr(ref, "value", ref)]] += int(n)
    out["total"] = int(dev_snap[_TOTAL_KEY])
    return out
