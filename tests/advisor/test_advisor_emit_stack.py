"""`advisor recommend … --emit harness` carries the stack options into the harness command, and the
command composes as a harness config (the same `load_spec` `python -m harness` runs on)."""

from __future__ import annotations

import shlex

import pytest

BASE = ["recommend", "--gpu", "24GB", "--examples", "3000", "--model", "SmolLM2-135M", "--emit", "harness"]


def _emit(capsys, *flags: str) -> tuple[str, list[str]]:
    from advisor.cli import main

    assert main([*BASE, *flags]) == 0
    line = capsys.readouterr().out.strip()
    argv = shlex.split(line, comments=True)
    assert argv[:3] == ["python", "-m", "harness"]
    return line, argv[3:]


def test_emitted_command_carries_the_stack_flags_and_composes(capsys):
    from harness.config import load_spec

    _, overrides = _emit(capsys, "--loss", "fused", "--checkpointing", "selective", "--precision", "fp32")
    spec = load_spec(overrides)
    assert spec.train.loss == "chunked"  # the harness's loss that never holds the whole logits
    assert spec.train.checkpoint_mode == "selective"
    assert spec.train.dtype == "fp32"


def test_emitted_command_carries_the_kernels_quoted_for_the_shell(capsys):
    from harness.config import load_spec

    line, overrides = _emit(capsys, "--kernels", "unsloth")
    assert "'train.kernels=[rms_norm,swiglu,rope,lora]'" in line  # unquoted, a shell would glob the brackets
    assert load_spec(overrides).train.kernels == ("rms_norm", "swiglu", "rope", "lora")


def test_emitted_command_keeps_the_defaults_without_stack_flags(capsys):
    from harness.config import load_spec

    line, overrides = _emit(capsys)
    spec = load_spec(overrides)
    assert spec.train.loss == "standard" and spec.train.checkpoint_mode in ("none", "full")
    assert "#" not in line


@pytest.mark.parametrize("flags, named", [(("--offload", "optimizer"), "--offload optimizer"),
                                          (("--float8",), "--float8")])  # fmt: skip
def test_what_the_harness_cannot_run_is_named_not_dropped(capsys, flags, named):
    from harness.config import load_spec

    line, overrides = _emit(capsys, *flags)
    load_spec(overrides)  # the command itself still composes
    assert "# not carried:" in line and named in line.split("#", 1)[1]


def test_a_wrapper_method_gets_a_command_it_accepts_and_the_flags_it_cannot_run_named(capsys):
    """The harness's fsdp runs its own loop and refuses train.loss/train.checkpointing=selective."""
    from advisor.cli import main
    from harness.config import load_spec

    assert main(["recommend", "--gpu", "4x24GB", "--examples", "3000", "--model", "70B", "--loss", "fused",
                 "--checkpointing", "selective", "--kernels", "liger", "--emit", "harness"]) == 0  # fmt: skip
    line = capsys.readouterr().out.strip()
    spec = load_spec(shlex.split(line, comments=True)[3:])
    assert spec.method.name == "fsdp"
    note = line.split("# not carried:", 1)[1]
    assert "--loss fused" in note and "--checkpointing selective" in note and "--kernels rms_norm+swiglu+rope" in note
