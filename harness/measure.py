"""Device-agnostic measurement: peak memory, steady-state throughput, FLOPs and MFU.

Hygiene lives here, not in callers: warm-up steps are excluded, the device is synchronised
before a clock is read, and every memory figure says what kind of memory it is.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import dataclass, field

from advisor.facts import flops_per_token, gpu_for_device_name, matmul_params  # noqa: F401  (re-exported)
from harness.atomic import write_json
from harness.paths import cache_dir

GB = 1024**3

# GPU datasheet peaks and the FLOPs formula are shared with the advisor: advisor/facts.py (torch-free).


def device_of() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def synchronize(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# ---------------------------------------------------------------- memory


def _rss_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _read_hwm_bytes() -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_hwm() -> bool:
    """Linux ≥ 4.0: writing 5 to clear_refs resets the peak-RSS counter (VmHWM) of this process."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class MemoryMonitor:
    """Peak memory of one phase of this process.

    CUDA: ``max_memory_allocated`` / ``max_memory_reserved`` after a reset (kind ``cuda_allocated``).
    CPU: peak resident set size above the baseline taken at ``start()`` (kind ``cpu_rss_delta``),
    read from the kernel's VmHWM after resetting it, or by sampling every 10 ms where that is not
    available.
    """

    def __init__(self, device: str):
        self.device = device
        self.baseline = 0
        self._peak_sampled = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._hwm = False

    def start(self) -> "MemoryMonitor":
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.baseline = torch.cuda.memory_allocated()
            return self
        self.baseline = _rss_bytes()
        self._hwm = _reset_hwm() and _read_hwm_bytes() is not None
        self._peak_sampled = self.baseline
        if not self._hwm:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.01):
            self._peak_sampled = max(self._peak_sampled, _rss_bytes())

    def current_gb(self) -> float:
        """Memory now above the baseline (the budget watchdog reads this)."""
        if self.device == "cuda":
            import torch

            return (torch.cuda.memory_allocated() - self.baseline) / GB
        return (_rss_bytes() - self.baseline) / GB

    def peak(self) -> dict:
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            return {
                "peak_memory_gb": (torch.cuda.max_memory_allocated() - self.baseline) / GB,
                "peak_reserved_gb": torch.cuda.max_memory_reserved() / GB,
                "memory_kind": "cuda_allocated",
            }
        peak = _read_hwm_bytes() if self._hwm else max(self._peak_sampled, _rss_bytes())
        return {
            "peak_memory_gb": max(0, peak - self.baseline) / GB,
            "peak_reserved_gb": None,
            "memory_kind": "cpu_rss_delta",
            "baseline_rss_gb": self.baseline / GB,
        }

    def stop(self):
        self._stop.set()


# ---------------------------------------------------------------- throughput


@dataclass
class StepClock:
    """Wall time and cumulative non-padding tokens at the end of each optimizer step."""

    device: str
    skip: int = 2
    t0: float | None = None
    ends: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    samples: list[int] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    cpu: list[tuple[float, float]] = field(default_factory=list)  # (machine busy, this process tree) CPU seconds

    def begin(self):
        synchronize(self.device)
        self.t0 = time.perf_counter()
        self._cpu_sample()

    def step_end(self, tokens_seen: int, samples_seen: int):
        synchronize(self.device)
        self.ends.append(time.perf_counter())
        self.tokens.append(int(tokens_seen))
        self.samples.append(int(samples_seen))
        self._cpu_sample()

    def _cpu_sample(self) -> None:
        """CPU runs: the busy CPU seconds of the CPUs this process may run on, and this process tree's (a launched
        job's ranks included), so the summary can tell how much of those CPUs other processes took while the
        steps were timed."""
        if self.device != "cpu":
            return
        import psutil

        mine = _usable_cpus()
        busy = 0.0
        for i, t in enumerate(psutil.cpu_times(percpu=True)):
            if mine is None or i in mine:
                busy += t.user + t.system + sum(getattr(t, k, 0.0) for k in ("nice", "irq", "softirq", "steal"))
        self.cpu.append((busy, _tree_cpu_seconds()))

    def summary(self) -> dict:
        """tokens/s and samples/s over steps ``skip+1 … n`` (the first ``skip`` are warm-up)."""
        n = len(self.ends)
        if n == 0:
            return {"steps": 0}
        skip = min(self.skip, n - 1)  # keep at least one measured step
        start_t = self.t0 if skip == 0 else self.ends[skip - 1]
        start_tok = 0 if skip == 0 else self.tokens[skip - 1]
        start_smp = 0 if skip == 0 else self.samples[skip - 1]
        dt = self.ends[-1] - start_t
        out = {
            "steps": n,
            "measured_steps": n - skip,
            "train_s": self.ends[-1] - self.t0,
            "tokens_per_s": (self.tokens[-1] - start_tok) / dt if dt > 0 else None,
            "samples_per_s": (self.samples[-1] - start_smp) / dt if dt > 0 else None,
            "step_s": dt / (n - skip),
            "tokens_trained": self.tokens[-1],
        }
        if len(self.cpu) == n + 1 and dt > 0:  # begin, then one sample per step: the timed window starts at [skip]
            import psutil

            (busy0, own0), (busy1, own1) = self.cpu[skip], self.cpu[-1]
            others = (busy1 - busy0) - (own1 - own0)
            cpus = len(_usable_cpus() or ()) or psutil.cpu_count() or 1
            out["cpu_busy_elsewhere"] = round(min(1.0, max(0.0, others / (dt * cpus))), 3)
        return out


def _usable_cpus() -> set[int] | None:
    """The CPUs this process may run on (its affinity: a cpuset, taskset); None where the OS does not say."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return None


def _tree_cpu_seconds() -> float:
    """User + system CPU seconds of this process, its live descendants (a launched job's ranks) and its reaped
    children. Linux: the children from /proc/self/task/*/children (a few small reads); elsewhere psutil's walk."""
    import psutil

    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for p in _descendants(me):
        try:
            c = p.cpu_times()
            total += c.user + c.system
        except psutil.Error:  # ended between the listing and the read
            continue
    return total


def _descendants(proc) -> list:
    import psutil

    tasks = f"/proc/{proc.pid}/task"
    if not os.path.isdir(tasks):
        return proc.children(recursive=True)
    out = []
    for tid in os.listdir(tasks):
        try:
            with open(f"{tasks}/{tid}/children") as f:
                pids = [int(x) for x in f.read().split()]
        except OSError:
            continue
        for pid in pids:
            try:
                child = psutil.Process(pid)
            except psutil.Error:
                continue
            out += [child, *_descendants(child)]
    return out


# ---------------------------------------------------------------- FLOPs and MFU


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _matmul_flops(dtype, n: int = 1024, tries: int = 5) -> float:
    """FLOP/s of the best of ``tries`` n³ matmuls (after one warm-up), at torch's current threads."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(tries):
        t = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def cpu_peak_flops(dtype_name: str, threads: int, measure=_matmul_flops) -> float:
    """The CPU's peak for (CPU, dtype, threads): a 1024³ matmul measured at every run (about
    0.1 s) and kept as the maximum ever seen in the cache. Another process on the cores can only
    slow a measurement down, so the maximum converges on the real peak; a peak measured once on
    a busy machine and trusted forever made later MFUs exceed 100%."""
    import torch

    key = f"{_cpu_name()}|{dtype_name}|{threads}|torch{torch.__version__}"
    path = cache_dir() / "cpu_peak_flops.json"
    try:
        cached = json.loads(path.read_text()) if path.exists() else {}
    except ValueError:
        cached = {}  # a damaged cache is re-measured, never trusted
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[dtype_name]
    flops = max(measure(dtype), float(cached.get(key) or 0.0))
    if flops != cached.get(key):
        cached[key] = flops
        write_json(path, cached)
    return flops


def peak_flops(device: str, dtype_name: str) -> tuple[float | None, str]:
    """(peak FLOP/s, where the figure came from)."""
    if device == "cuda":
        import torch

        name = torch.cuda.get_device_name()
        gpu = gpu_for_device_name(name)
        if gpu is not None:
            return gpu.bf16_tflops * 1e12, f"table:{gpu.name}"
        return None, f"unknown GPU '{name}'"
    import torch

    threads = torch.get_num_threads()
    return cpu_peak_flops(dtype_name, threads), f"measured:matmul-1024-{dtype_name}-{threads}threads"


def hardware(device: str) -> dict:
    import psutil
    import torch

    info = {
        "device": device,
        "device_name": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / GB, 2),
        "platform": platform.platform(),
    }
    if device == "cuda":
        props = torch.cuda.get_device_properties(0)
        info.update(
            device_name=props.name,
            device_count=torch.cuda.device_count(),
            device_memory_gb=round(props.total_memory / GB, 2),
            cuda=torch.version.cuda,
            driver=_nvidia_driver(),
        )
    return info


def _nvidia_driver() -> str | None:
    try:
        with open("/proc/driver/nvidia/version") as f:
            return f.readline().strip()
    except OSError:
        return None
