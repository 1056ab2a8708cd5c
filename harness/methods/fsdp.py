"""FSDP: the run's training step is a multi-process job that shards the model with FSDP2.

The parent process is an ordinary run (``harness.run.execute``: load, score the base, score
the tuned model, write the record). Only ``fit`` differs: it starts

    torchrun --nproc-per-node <world_size> -m harness.methods.fsdp_worker <job dir>

waits for it, and brings back what rank 0 reports (global tokens/s, per-rank peak memory as
the max over ranks, per-rank parameter count, losses) and the trained weights, which it loads
into its own unsharded copy so the tuned model is scored by the same code as any other run.
A failure of any rank becomes the record's error; workers never write a record.

``method.inner`` = full | lora chooses what is trained; ``method.world_size`` the ranks per node.
Multi-node: ``method.options`` nnodes, node_rank, master_addr, master_port (or rdzv_endpoint);
see docs/methods.md.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from dataclasses import dataclass

from harness.atomic import write_json
from harness.errors import UserError
from harness.methods.base import Wrapper, options

STDERR_TAIL = 2000  # characters of the job's stderr kept when no rank left an error file


def torchrun_command(spec, job_dir: Path) -> list[str]:
    """The launcher command. One node: a private rendezvous on a free port (``--standalone``).
    Several nodes: the same command on every node with its ``node_rank`` and a shared endpoint."""
    opts = options(spec.method)
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={spec.method.world_size}"]
    nnodes = int(opts["nnodes"])
    if nnodes == 1:
        cmd.append("--standalone")
    else:
        endpoint = opts["rdzv_endpoint"] or f"{opts['master_addr']}:{opts['master_port']}"
        cmd += [
            f"--nnodes={nnodes}",
            f"--node-rank={int(opts['node_rank'])}",
            "--rdzv-backend=c10d",
            f"--rdzv-endpoint={endpoint}",
            f"--rdzv-id={opts['rdzv_id'] or spec.run_id}",
        ]
    return [*cmd, "-m", "harness.methods.fsdp_worker", str(job_dir)]


def _rank_errors(job_dir: Path) -> list[dict]:
    out = []
    for path in sorted(job_dir.glob("error.rank*.json")):
        out.append(json.loads(path.read_text()))
    return out


def run_job(spec, job_dir: Path) -> dict:
    """Run the torchrun job; returns rank 0's report, or raises with the first failing rank's error."""
    write_json(job_dir / "spec.json", spec.to_dict())
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // spec.method.world_size)))}
    timeout = options(spec.method)["timeout_s"] or spec.timeout_s
    # Own process group: on a timeout or Ctrl-C the whole job (torchrun and its ranks) is stopped, not just torchrun.
    proc = subprocess.Popen(torchrun_command(spec, job_dir), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except BaseException as exc:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.communicate()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise TimeoutError(f"fsdp job exceeded its time limit of {timeout} s") from None
        raise
    errors = _rank_errors(job_dir)
    if errors:
        first = min(errors, key=lambda e: e["rank"])
        ranks = ", ".join(str(e["rank"]) for e in errors)
        raise RuntimeError(f"fsdp rank {first['rank']} failed (failed ranks: {ranks}; exit {proc.returncode}): "
                           f"{first['type']}: {first['message']}\n{first['traceback']}")
    if proc.returncode != 0 or not (job_dir / "report.json").exists():
        raise RuntimeError(f"fsdp job exited with status {proc.returncode} and no report:\n{stderr[-STDERR_TAIL:]}")
    return json.loads((job_dir / "report.json").read_text())


@dataclass(frozen=True)
class FSDP(Wrapper):
    name = "fsdp"

    def check(self, method, train, task):
        if method.quantize:
            raise UserError("method.quantize=4bit does not work with fsdp: FSDP2 cannot shard bitsandbytes 4-bit weights")
        if train.optimizer not in ("adamw", "sgd"):
            raise UserError(f"train.optimizer '{train.optimizer}' does not work with fsdp (sharded DTensor parameters); use adamw or sgd")
        super().check(method, train, task)

    def load_kwargs(self, method):
        return {}  # the parent's copy is unquantized: it only receives the trained weights

    def ranks(self, method):
        return method.world_size * int(options(method)["nnodes"])

    # prepare (the inner method's): the parent's copy mirrors the workers' model (adapters included)
    # so the trained weights load into it.

    def fit(self, model, tok, job, clock, progress):
        from safetensors.torch import load_file

        with tempfile.TemporaryDirectory(prefix="tunebench-fsdp-") as tmp:
            job_dir = Path(tmp)
            report = run_job(job.run, job_dir)  # job.run: set for a method that launches its own job
            trained = load_file(job_dir / "trained.safetensors")
            missing = set(trained) - set(model.state_dict())
            if missing:
                raise RuntimeError(f"fsdp: trained weights do not fit the model (e.g. {sorted(missing)[0]})")
            model.load_state_dict(trained, strict=False)
        clock.t0 = 0.0  # rank 0's clock, relative to its train start; tokens are summed over ranks
        clock.ends[:] = report["ends"]
        clock.tokens[:] = report["tokens"]
        clock.samples[:] = report["samples"]
        clock.losses[:] = report["losses"]
        return report["metrics"]


WRAPPER = FSDP  # harness.methods.get_method builds FSDP(inner=…)
