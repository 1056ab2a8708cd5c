"""trust_remote_code comes from the user's command line only, never from a manifest or record.

A results folder someone sends you is data: its manifest saying ``trust_remote_code: true``
must not make ``harness eval`` or ``harness export`` run the model's own Python code.
"""

from __future__ import annotations

import json

import pytest

from harness.config import load_spec
from tests.conftest import TINY


class _Loaded(Exception):
    """Raised by the stand-in for models.load: carries what the loader was asked for."""


@pytest.fixture
def tampered_artifact(tmp_path, monkeypatch):
    """An adapter artifact whose manifest (and record) ask for remote code; models.load records the ask."""
    spec = load_spec([*TINY, f"results_dir={tmp_path}", "model.trust_remote_code=true"])
    assert spec.model.trust_remote_code  # the tampered config itself is valid and says true
    directory = tmp_path / "artifacts" / spec.run_id
    directory.mkdir(parents=True)
    config = spec.to_dict()
    (directory / "tunebench_artifact.json").write_text(json.dumps(
        {"kind": "adapter", "run_id": spec.run_id, "method": "lora", "save": "adapter", "base": {}, "config": config}))
    record = {"run_id": spec.run_id, "status": "ok", "config": config, "metrics": {},
              "artifacts": [{"kind": "adapter", "path": f"artifacts/{spec.run_id}"}]}
    (tmp_path / f"{spec.run_id}.json").write_text(json.dumps(record))
    data = tmp_path / "eval.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")

    asked: list[bool] = []

    def fake_load(model_spec, **kw):
        asked.append(model_spec.trust_remote_code)
        raise _Loaded()

    monkeypatch.setattr("harness.models.load", fake_load)
    return spec.run_id, tmp_path, data, asked


@pytest.mark.parametrize("flag", [[], ["--trust-remote-code"]])
def test_export_takes_trust_remote_code_only_from_the_command_line(tampered_artifact, tmp_path, flag):
    from harness import export

    run_id, results, _, asked = tampered_artifact
    with pytest.raises(_Loaded):
        export._main([run_id, "--results", str(results), "--out", str(tmp_path / "out"), "--merge", *flag])
    assert asked == [bool(flag)]


@pytest.mark.parametrize("flag", [[], ["--trust-remote-code"]])
def test_eval_takes_trust_remote_code_only_from_the_command_line(tampered_artifact, flag):
    from harness import eval_command

    run_id, results, data, asked = tampered_artifact
    with pytest.raises(_Loaded):
        eval_command._main([run_id, "--results", str(results), "--data", str(data), *flag])
    assert asked == [bool(flag)]
