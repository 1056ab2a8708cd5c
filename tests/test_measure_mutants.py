"""harness/measure.py's figures with their inputs pinned: the memory monitor's arithmetic on CPU
(kernel high-water mark or sampling) and on a stand-in CUDA, the step clock's rates, the peak FLOP/s
and where it came from. Written against the survivors of `scripts/mutation.sh measure`
(docs/mutation.md)."""

from __future__ import annotations

import json
import os
from types import SimpleNamespace

import pytest
import torch

from harness import measure
from harness.measure import GB, MemoryMonitor, StepClock


def test_cpu_peak_is_the_kernel_high_water_mark_above_the_baseline(monkeypatch):
    rss = iter([1 * GB])
    monkeypatch.setattr(measure, "_rss_bytes", lambda: next(rss))
    monkeypatch.setattr(measure, "_reset_hwm", lambda: True)
    monkeypatch.setattr(measure, "_read_hwm_bytes", lambda: 3 * GB)
    mon = MemoryMonitor("cpu").start()
    assert mon._thread is None  # the kernel keeps the peak: no sampling thread
    assert mon.peak() == {"peak_memory_gb": 2.0, "peak_reserved_gb": None, "memory_kind": "cpu_rss_delta",
                          "baseline_rss_gb": 1.0}
    monkeypatch.setattr(measure, "_read_hwm_bytes", lambda: GB // 2)  # below the baseline: 0, never negative
    assert mon.peak()["peak_memory_gb"] == 0


def test_cpu_peak_falls_back_to_sampling_when_the_kernel_cannot_reset_its_counter(monkeypatch):
    values = {"rss": 1 * GB}
    monkeypatch.setattr(measure, "_rss_bytes", lambda: values["rss"])
    monkeypatch.setattr(measure, "_read_hwm_bytes", lambda: 100 * GB)  # stale: not reset, not to be used
    for reset, hwm in ((False, 100 * GB), (True, None)):
        monkeypatch.setattr(measure, "_reset_hwm", lambda r=reset: r)
        monkeypatch.setattr(measure, "_read_hwm_bytes", lambda h=hwm: h)
        values["rss"] = 1 * GB
        mon = MemoryMonitor("cpu").start()
        try:
            assert mon._thread is not None and mon._thread.daemon
            mon._peak_sampled = 4 * GB  # what the sampler saw at the top
            values["rss"] = 2 * GB
            assert mon.peak()["peak_memory_gb"] == 3.0
            assert mon.current_gb() == 1.0
            mon._peak_sampled = 1 * GB
            values["rss"] = 5 * GB / 2  # now above anything sampled: the present counts
            assert mon.peak()["peak_memory_gb"] == 1.5
        finally:
            mon.stop()
        mon._thread.join(1)
        assert not mon._thread.is_alive()


def test_the_sampler_keeps_the_highest_rss_it_saw(monkeypatch):
    seq = iter([2 * GB, 5 * GB, 3 * GB])
    mon = MemoryMonitor("cpu")
    mon._peak_sampled = 1 * GB
    stop = iter([False, False, False, True])
    monkeypatch.setattr(mon._stop, "wait", lambda t: next(stop))
    monkeypatch.setattr(measure, "_rss_bytes", lambda: next(seq))
    mon._sample()
    assert mon._peak_sampled == 5 * GB


def test_the_proc_readers_parse_this_linux_process():
    hwm = measure._read_hwm_bytes()
    assert hwm is None or hwm >= 1024 * 1024  # kB → bytes: any Python process holds over 1 MB
    if hwm is not None:  # the high-water mark is at least what is resident now (within a page or so)
        assert hwm >= measure._rss_bytes() - 64 * 1024 * 1024
    assert measure._cpu_name()


class FakeCuda:
    def __init__(self, allocated, max_allocated, max_reserved):
        self.allocated, self.max_allocated, self.max_reserved = allocated, max_allocated, max_reserved
        self.calls = []

    def install(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "synchronize", lambda *a: self.calls.append("sync"))
        monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda *a: self.calls.append("reset"))
        monkeypatch.setattr(torch.cuda, "memory_allocated", lambda *a: self.allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda *a: self.max_allocated)
        monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda *a: self.max_reserved)
        return self


def test_cuda_peak_is_max_allocated_above_the_start_and_reserved_as_is(monkeypatch):
    cuda = FakeCuda(allocated=1 * GB, max_allocated=4 * GB, max_reserved=6 * GB).install(monkeypatch)
    mon = MemoryMonitor("cuda").start()
    assert cuda.calls == ["sync", "reset"] and mon.baseline == 1 * GB
    cuda.allocated = 3 * GB
    assert mon.current_gb() == 2.0
    assert mon.peak() == {"peak_memory_gb": 3.0, "peak_reserved_gb": 6.0, "memory_kind": "cuda_allocated"}
    assert cuda.calls[-1] == "sync"


def test_a_clock_read_on_cuda_waits_for_the_device(monkeypatch):
    cuda = FakeCuda(0, 0, 0).install(monkeypatch)
    measure.synchronize("cpu")
    assert cuda.calls == []
    measure.synchronize("cuda")
    assert cuda.calls == ["sync"]
    clock = StepClock("cuda")
    clock.begin()
    clock.step_end(10, 1)
    assert cuda.calls == ["sync"] * 3


def test_stepclock_without_warmup_counts_from_the_start(monkeypatch):
    times = iter([10.0, 12.0, 14.0])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(times))
    clock = StepClock("cpu", skip=0)
    assert StepClock("cpu").skip == 2
    clock.begin()
    clock.step_end(100.7, 4)
    clock.step_end(300, 8)
    assert clock.tokens == [100, 300]
    s = clock.summary()
    assert 0.0 <= s.pop("cpu_busy_elsewhere") <= 1.0  # a CPU clock also says what other processes took (test_measure.py)
    assert s == {"steps": 2, "measured_steps": 2, "train_s": 4.0, "tokens_per_s": 75.0, "samples_per_s": 2.0,
                 "step_s": 2.0, "tokens_trained": 300}
    assert StepClock("cpu").summary() == {"steps": 0}


def test_stepclock_with_no_elapsed_time_reports_no_rate(monkeypatch):
    monkeypatch.setattr(measure.time, "perf_counter", lambda: 5.0)
    clock = StepClock("cpu", skip=1)
    clock.begin()
    clock.step_end(10, 1)
    clock.step_end(20, 2)
    s = clock.summary()
    assert s["tokens_per_s"] is None and s["samples_per_s"] is None and s["step_s"] == 0.0


def test_cpu_peak_is_cached_per_cpu_dtype_and_threads(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path))
    seen = []
    assert measure.cpu_peak_flops("bf16", 2, measure=lambda d: seen.append(d) or 1e9) == 1e9
    assert measure.cpu_peak_flops("fp16", 2, measure=lambda d: seen.append(d) or 2e9) == 2e9
    assert measure.cpu_peak_flops("fp32", 1, measure=lambda d: seen.append(d) or 3e9) == 3e9
    assert seen == [torch.bfloat16, torch.float16, torch.float32]
    cache = json.loads((tmp_path / "cpu_peak_flops.json").read_text())
    name = measure._cpu_name()
    assert cache == {f"{name}|bf16|2|torch{torch.__version__}": 1e9, f"{name}|fp16|2|torch{torch.__version__}": 2e9,
                     f"{name}|fp32|1|torch{torch.__version__}": 3e9}
    assert not list(tmp_path.glob("*.tmp*"))  # written atomically


def test_the_matmul_peak_is_two_n_cubed_over_the_best_time(monkeypatch):
    times = iter([0.0, 0.5, 1.0, 1.1, 2.0, 2.3])  # tries take 0.5, 0.1, 0.3 s
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(times))
    assert measure._matmul_flops(torch.float32, n=8, tries=3) == pytest.approx(2 * 8**3 / 0.1)


def test_peak_flops_names_its_source(monkeypatch, tmp_path):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path))
    monkeypatch.setattr(measure, "cpu_peak_flops", lambda dtype, threads: 1e11 * threads)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    assert measure.peak_flops("cpu", "bf16") == (3e11, "measured:matmul-1024-bf16-3threads")
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    flops, source = measure.peak_flops("cuda", "bf16")
    assert source == "table:H100-SXM" or source.startswith("table:H100")
    assert flops == measure.gpu_for_device_name("NVIDIA H100 80GB HBM3").bf16_tflops * 1e12
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "Mystery GPU 9000")
    assert measure.peak_flops("cuda", "bf16") == (None, "unknown GPU 'Mystery GPU 9000'")


def test_hardware_describes_this_machine(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 3)
    info = measure.hardware("cpu")
    assert info["device"] == "cpu" and info["torch_threads"] == 3 and info["device_name"] == measure._cpu_name()
    assert info["cpu_count"] >= 1 and info["memory_gb"] > 0.1 and info["platform"]
    assert "cuda" not in info


def test_a_measured_window_under_a_second_still_has_a_rate(monkeypatch):
    # a GPU runs 10 short steps in well under a second: the rate is still defined
    times = iter([0.0, 0.1, 0.2, 0.5])
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(times))
    clock = StepClock("cpu", skip=1)
    clock.begin()
    for step in (1, 2, 3):
        clock.step_end(100 * step, 2 * step)
    s = clock.summary()
    assert s["tokens_per_s"] == pytest.approx(200 / 0.4) and s["samples_per_s"] == pytest.approx(4 / 0.4)


def test_resetting_the_high_water_mark_lowers_it_to_what_is_resident_now():
    big = bytearray(200 * 1024 * 1024)  # raise the peak by 200 MB, then free it
    big[::4096] = b"x" * len(big[::4096])
    del big
    before = measure._read_hwm_bytes()
    if before is None or not os.access("/proc/self/clear_refs", os.W_OK):
        pytest.skip("no VmHWM or /proc/self/clear_refs here")
    assert measure._reset_hwm() is True
    after = measure._read_hwm_bytes()
    assert after < before - 100 * 1024 * 1024


def test_hardware_on_cuda_names_the_card_its_memory_and_the_driver(monkeypatch):
    props = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * GB)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    monkeypatch.setattr(measure, "_nvidia_driver", lambda: "NVRM version: 570.1")
    info = measure.hardware("cuda")
    assert (info["device"], info["device_name"], info["device_count"], info["device_memory_gb"], info["cuda"],
            info["driver"]) == ("cuda", "NVIDIA H100 80GB HBM3", 2, 80.0, "12.8", "NVRM version: 570.1")
