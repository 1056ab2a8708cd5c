"""What a GPU run holds beyond the simulated step's allocated bytes: an overhead model, term by term.

The simulation counts every tensor torch allocates in the step (``torch.cuda.max_memory_allocated``'s
quantity). A real run also holds, each with its mechanism:
- **allocator block rounding** (in reserved): the caching allocator rounds every request to 512 B
  and gives a request over 10 MiB a segment of its own rounded up to 2 MiB (smaller ones share
  2 MiB / 20 MiB segments); counted exactly for the tensors alive through the whole run (weights,
  gradients, optimizer states), ``rounding_bytes``.
- **allocator caching and fragmentation** (in reserved): activations and temporaries are freed and
  re-allocated in other sizes every step; a freed block is reused only by a request that fits it,
  so the cache grows beyond the live bytes. Modelled as a fraction of the transient (activation +
  temporary) bytes at the peak: ``FRAG_EXPECTED`` expected, ``FRAG_HIGH`` at the range's high end.
  These are assumptions, not fits: PyTorch's allocator documentation and the published
  reserved-over-allocated gaps (a few % on optimizer-step peaks, 10-30% on activation-heavy ones).
- **cuBLAS workspace** (in reserved, once per stream): ``CUBLAS_WORKSPACE_MIB`` (cuBLAS on Hopper:
  32 MiB; the default ``CUBLAS_WORKSPACE_CONFIG=:4096:8``).
- **bitsandbytes' forward dequantize buffer**: backward dequantizes each 4-bit weight through
  ``F.dequantize_4bit`` (a torch tensor: in the simulated peak, checked in tests/test_simulate.py),
  but forward calls the fused ``gemm_4bit`` op, whose CUDA implementation dequantizes the weight
  to the compute dtype inside the op; its fake kernel returns only the output. At most one such
  buffer (the largest 4-bit weight) is live: added when the peak is in the forward phase, and to
  the range's high end always.
- **CUDA context** (outside reserved, in nvidia-smi): driver state and loaded kernels, 0.3-0.6 GiB
  with CUDA 12 lazy loading; the budget check uses the advisor's ``memory.CUDA_CONTEXT_GB``
  (which also absorbs what the allocator caches beyond the range on the published rows).
"""

from __future__ import annotations

from advisor.inputs.catalog import GIB

MIB = 2**20
FRAG_EXPECTED = 0.10  # cached-but-free bytes as a fraction of the transient bytes at the peak
FRAG_HIGH = 0.35
CUBLAS_WORKSPACE_MIB = 32


def rounding_bytes(sizes: list[int]) -> int:
    """What the caching allocator's rounding adds to tensors of these sizes (bytes)."""
    def rounded(n: int) -> int:
        n = -(-n // 512) * 512
        return -(-n // (2 * MIB)) * 2 * MIB if n > 10 * MIB else n

    return sum(rounded(n) - n for n in sizes)


def reserved(peak: dict, long_lived: list[int], *, bnb_dequant_bytes: int = 0, peak_phase: str = "backward") -> dict:
    """Reserved memory (GiB) from the simulated peak (bytes by kind) and the sizes of the tensors
    alive through the run: expected and range, term by term."""
    alloc = peak["total"]
    transient = peak.get("activations", 0) + peak.get("temporaries", 0)
    rounding = rounding_bytes(long_lived)
    cublas = CUBLAS_WORKSPACE_MIB * 2**20
    dequant = bnb_dequant_bytes if peak_phase == "forward" else 0
    expected = alloc + rounding + cublas + dequant + FRAG_EXPECTED * transient
    high = alloc + rounding + cublas + bnb_dequant_bytes + FRAG_HIGH * transient
    terms = {
        "allocator_rounding_gb": (rounding / GIB, f"{len(long_lived)} weights, gradients and optimizer states rounded up to 512 B (over 10 MiB: to 2 MiB)"),
        "allocator_fragmentation_gb": (FRAG_EXPECTED * transient / GIB,
                                       f"{FRAG_EXPECTED:.0%} of {transient / GIB:.2f} GB of activations/temporaries "
                                       f"freed and re-allocated each step ({FRAG_HIGH:.0%} at the high end)"),
        "cublas_workspace_gb": (cublas / GIB, f"cuBLAS workspace, {CUBLAS_WORKSPACE_MIB} MiB per stream"),
        "bnb_dequant_gb": (dequant / GIB, f"the largest 4-bit weight dequantized inside forward's gemm_4bit op "
                                          f"({bnb_dequant_bytes / GIB:.3f} GB; counted at a forward peak, in the high end always)"),
    }  # fmt: skip
    return {
        "allocated_gb": alloc / GIB,
        "reserved_gb": expected / GIB,
        "reserved_gb_range": (alloc / GIB, high / GIB),
        "terms": {k: {"gb": round(v, 3), "mechanism": why} for k, (v, why) in terms.items()},
    }
