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
  an untracked step never waits for. With automatic GC on, the peak depends on when it runs (fake
  and real tensors allocate different Python objects): GC is off while tracking and the young
  generations are collected after every module's forward, so such outputs die where they would
  without the tracker, the same way on fake and real tensors.

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

KINDS = {  # the tracker's reference types → the names the simulator reports
    _MemRefType.PARAM: "parameters", _MemRefType.BUFFER: "buffers", _MemRefType.GRAD: "gradients",
    _MemRefType.ACT: "activations", _MemRefType.TEMP: "temporaries", _MemRefType.OPT: "optimizer_states",
    _MemRefType.OTH: "other",
}  # fmt: skip


class PeakTracker(MemTracker):
    """MemTracker with global and per-phase peaks only; ``phase`` may be set by the caller."""

    def __init__(self) -> None:
        super().__init__()
        self.phase: str | None = None  # caller's label (e.g. "loss"); None → derived from the tracker's state
        self.phase_peaks: dict[str, dict] = {}  # phase → {kind: bytes, "total": bytes}
        self._seen: weakref.WeakSet = weakref.WeakSet()  # modules whose parameters are tracked

    def __enter__(self) -> "PeakTracker":
        if self._depth == 0:
            self._gc_was_on = gc.isenabled()
            gc.disable()
            self._collect = torch.nn.modules.module.register_module_forward_hook(_collect_young)
        return super().__enter__()

    def __exit__(self, *args) -> None:
        super().__exit__(*args)
        if self._depth == 0:
            self._collect.remove()
            if self._gc_was_on:
                gc.enable()

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

    def _track_module_params_and_buffers(self, module: torch.nn.Module, install_grad_hooks: bool = True) -> tuple[int, int]:
        frozen = [p for p in module.parameters() if not p.requires_grad]
        for p in frozen:  # tracked, never hooked
            self._update_and_maybe_create_winfos(p, _MemRefType.PARAM)
        hooked = install_grad_hooks and any(p.requires_grad for p in module.parameters())
        if not frozen:
            return super()._track_module_params_and_buffers(module, install_grad_hooks)
        for p in module.parameters():
            if p.requires_grad:
                if hooked and self._param_to_grad_hook_handles.get(p, None) is None:
                    self._hook(p)
                self._update_and_maybe_create_winfos(p, _MemRefType.PARAM)
        for b in module.buffers():
            self._update_and_maybe_create_winfos(b, _MemRefType.BUFFER)
        return (0, 0)

    def _hook(self, p: torch.Tensor) -> None:
        def grad_hook(grad: torch.Tensor) -> None:
            self._update_and_maybe_create_winfos(grad, _MemRefType.GRAD)

        self._param_to_grad_hook_handles[p] = (
            p.register_hook(grad_hook),
            p.register_post_accumulate_grad_hook(lambda q: grad_hook(q.grad)),
        )

    def peak(self) -> dict:
        """{kind: bytes, "total": bytes} at the global peak (one device)."""
        snaps = list(self._peak_mem_snap.values())
        return _named(snaps[0]) if snaps else {"total": 0}


def _collect_young(module, args, output) -> None:
    gc.collect(1)  # generations 0 and 1: what this module's forward left in cycles (cheap: young objects only)


def _named(dev_snap: dict) -> dict:
    out = {name: int(dev_snap.get(ref, 0)) for ref, name in KINDS.items()}
    out["total"] = int(dev_snap[_TOTAL_KEY])
    return out
