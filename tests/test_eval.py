"""Scoring through lm-eval: probes on the tiny model, the task score against plain generation,
forgetting fields and their sign conventions, KL from base, and probe-name errors. No network."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from harness import evaluate, forgetting, probes
from harness.errors import UserError
from harness.evaluate import Score
from tests.conftest import TINY, cli

FORGETTING_FIELDS = {"base", "tuned", "delta", "drop", "stderr", "significant", "higher_is_better", "metric", "n", "seconds"}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny():
    from harness import models
    from harness.config import load_spec

    spec = load_spec(["debug=smoke"])
    return models.load(spec.model, seed=0, dtype=torch.float32, device="cpu")


@pytest.fixture(scope="module")
def chatty(tiny):
    """The tiny model with large random weights: varied, non-degenerate greedy outputs."""
    import copy

    model = copy.deepcopy(tiny.model)
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.6 if p.dim() > 1 else 0.1) + (1.0 if p.dim() == 1 else 0.0))
    return model


def test_shipped_probes_load_and_score_on_the_tiny_model(tiny, cache):
    tiny.model.train()
    scores = evaluate.probe_scores(tiny.model, tiny.tokenizer, ["general_mc", "general_ppl"], limit=12, batch_size=8)
    assert tiny.model.training  # lm-eval's HFLM switches to eval(); the caller's mode is restored
    tiny.model.eval()
    mc, ppl = scores["general_mc"], scores["general_ppl"]
    assert mc.metric == "acc" and mc.higher_is_better and mc.n == 12
    assert 0 <= mc.mean <= 1 and 0 < mc.stderr < 0.5
    assert ppl.metric == "word_perplexity" and not ppl.higher_is_better and ppl.n == 12
    assert ppl.mean > 1 and 0 < ppl.stderr < ppl.mean
    assert mc.seconds > 0 and ppl.seconds > 0


def test_probe_limit_spreads_over_the_file_not_its_head():
    rows = probes.PROBES["general_mc"].rows()
    assert len(rows) >= 320 and all(len(r["choices"]) == 4 for r in rows)
    picked = probes.spread(rows, 14)
    assert len(picked) == 14 and len({r["domain"] for r in picked}) == len({r["domain"] for r in rows})
    assert probes.spread(rows, None) == rows and probes.spread(rows, 10_000) == rows
    paragraphs = probes.PROBES["general_ppl"].rows()
    assert len(paragraphs) >= 20 and all(p["text"] and "\n\n" not in p["text"] for p in paragraphs)


def test_word_perplexity_stderr_matches_lm_eval_value_and_shrinks_with_n():
    from lm_eval.api.metrics import weighted_perplexity

    items = [(-120.0, 40), (-300.0, 90), (-80.0, 30), (-200.0, 55)]
    value, se = evaluate.word_perplexity(items)
    assert value == pytest.approx(weighted_perplexity(items))
    assert 0 < se < value
    _, se_more = evaluate.word_perplexity(items * 4)
    assert se_more < se


class _FirstCharTask:
    """A stand-in task whose checker gives partial, generation-dependent credit."""

    name = "first_char"
    max_new_tokens = 6

    def score(self, generation: str, ex) -> float:
        return float(bool(generation) and ord(generation[0]) % 2 == 0)


def test_task_score_through_lm_eval_matches_plain_generation(chatty, tiny, cache):
    from harness.config import load_spec
    from harness.tasks import get_task
    from harness.tasks.base import mean_stderr

    test = get_task(load_spec(["debug=smoke"]).task).splits()["test"][:12]
    tok = tiny.tokenizer
    for task in (_FirstCharTask(), get_task(load_spec(["debug=smoke"]).task)):
        ref = evaluate.generate(chatty, tok, [ex.prompt for ex in test], max_new_tokens=task.max_new_tokens, batch_size=1)
        score, gens = evaluate.score(chatty, tok, task, test, batch_size=1)
        assert gens == ref
        mean, se = mean_stderr([task.score(g, ex) for g, ex in zip(ref, test)])
        assert score.mean == pytest.approx(mean) and score.n == len(test)
        assert (math.isnan(se) and math.isnan(score.stderr)) or score.stderr == pytest.approx(se)
    assert len(set(ref)) > 3, ref  # the comparison saw varied outputs, not one repeated string
    # Batched (lm-eval sorts by length, left-pads): same answers within float noise on this model.
    batched, _ = evaluate.score(chatty, tok, _FirstCharTask(), test, batch_size=8)
    assert batched.mean == pytest.approx(evaluate.score(chatty, tok, _FirstCharTask(), test, batch_size=1)[0].mean, abs=0.1)
    assert not chatty.training


def test_forgetting_sign_conventions_follow_metric_direction():
    acc = lambda m, se=0.02: Score(m, se, 300, 1.0, "acc", True)  # noqa: E731
    ppl = lambda m, se=0.5: Score(m, se, 100, 1.0, "word_perplexity", False)  # noqa: E731

    lost = forgetting.entry(acc(0.50), acc(0.40))
    assert lost["delta"] == pytest.approx(0.10) and lost["drop"] == pytest.approx(0.10) and lost["significant"]
    assert lost["stderr"] == pytest.approx(math.sqrt(2) * 0.02)
    assert not forgetting.entry(acc(0.50), acc(0.47))["significant"]  # 0.03 < 2·0.028
    assert not forgetting.entry(acc(0.40), acc(0.50))["significant"]  # better is never "forgetting"

    worse = forgetting.entry(ppl(20.0), ppl(25.0))
    assert worse["delta"] == pytest.approx(-5.0) and worse["significant"] and not worse["higher_is_better"]
    assert worse["drop"] == pytest.approx(5.0) == forgetting.drop({"delta": -5.0, "higher_is_better": False})  # > 0 = forgot
    assert forgetting.drop({"delta": 0.1}) == pytest.approx(0.1)  # a record without a direction: higher is better
    assert not forgetting.entry(ppl(25.0), ppl(20.0))["significant"]  # lower perplexity = better
    assert not forgetting.entry(acc(0.5, float("nan")), acc(0.1))["significant"]  # no stderr, no claim


def test_run_records_forgetting_and_caches_the_base(run_tiny, cache):
    over = ("eval.probes=[general_mc,general_ppl]", "eval.probe_limit=8", "train.max_steps=3")
    first = run_tiny(*over)
    assert first["status"] == "ok", first["error"]
    m = first["metrics"]
    assert {"task_score", "task_score_base", "task_score_stderr"} <= set(m)
    assert set(m["forgetting"]) == {"general_mc", "general_ppl"}
    for name, f in m["forgetting"].items():
        assert FORGETTING_FIELDS <= set(f), name
        assert f["delta"] == pytest.approx(f["base"] - f["tuned"])
        assert f["stderr"] == pytest.approx(math.sqrt(f["base_stderr"] ** 2 + f["tuned_stderr"] ** 2))
        assert isinstance(f["significant"], bool) and f["n"] == 8
    assert m["forgetting"]["general_mc"]["higher_is_better"] is True
    assert m["forgetting"]["general_ppl"]["higher_is_better"] is False
    assert m["base_probes_cached"] == {"general_mc": False, "general_ppl": False}

    second = run_tiny(*over, "train.lr=1e-3")  # another run of the same base: base probes from the cache
    assert second["metrics"]["base_probes_cached"] == {"general_mc": True, "general_ppl": True}
    assert second["metrics"]["forgetting"]["general_mc"]["base"] == m["forgetting"]["general_mc"]["base"]


def test_kl_from_base_is_zero_untrained_and_positive_after_change(tiny):
    import copy

    from peft import LoraConfig, get_peft_model

    test = [("user", "hello there"), ("assistant", "general")]
    prompts = [[{"role": r, "content": c} for r, c in test], "plain text works too"]
    peft_model = get_peft_model(copy.deepcopy(tiny.model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    assert evaluate.kl_from_base(peft_model, None, tiny.tokenizer, prompts) == pytest.approx(0.0, abs=1e-6)  # B = 0 at init
    with torch.no_grad():
        for n, p in peft_model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    kl = evaluate.kl_from_base(peft_model, None, tiny.tokenizer, prompts)
    assert kl > 1e-4
    merged = copy.deepcopy(peft_model).merge_and_unload()  # a full model with the same weights
    assert evaluate.kl_from_base(merged, tiny.model, tiny.tokenizer, prompts) == pytest.approx(kl, rel=1e-3)


def test_unknown_probe_names_tunebench_probes(monkeypatch):
    monkeypatch.setattr(probes, "lm_eval_task_names", lambda: ["mmlu", "hellaswag", "arc_easy"])
    with pytest.raises(UserError, match=r"unknown probe 'general_mcq' \(did you mean 'general_mc'\?\).*general_mc, general_ppl"):
        probes.resolve(["general_mcq"])
    with pytest.raises(UserError, match="did you mean 'hellaswag'"):
        probes.resolve(["helaswag"])
    assert [p.name for p in probes.resolve(["general_ppl", "mmlu"])] == ["general_ppl", "mmlu"]
    assert not probes.resolve(["mmlu"])[0].shipped


def test_missing_standard_task_is_a_one_line_error_before_training(tmp_path):
    # arc_easy is a real lm-eval task whose dataset is not in this machine's cache (no network).
    res = cli(*TINY, "eval.probes=[general_mc,arc_easy]", f"results_dir={tmp_path}", timeout=600)
    assert res.returncode == 2, res.stderr[-2000:]
    lines = [ln for ln in res.stderr.splitlines() if ln.strip().startswith("harness: error")]
    assert len(lines) == 1 and "probe 'arc_easy'" in lines[0] and "Traceback" not in res.stderr
    assert not list(tmp_path.glob("*.json"))  # nothing trained, nothing recorded


def test_a_standard_task_is_looked_up_in_its_own_folders_a_tag_or_an_incomplete_group_in_the_full_index():
    """lm-eval's full index parses ~14k YAML files (7-30 s) per process; a task or a group whose members are all
    found is loaded from the folders that name it. A tag, or a group with a member outside them, is not."""
    from lm_eval.tasks._index import Entry, Kind

    from harness.lm_eval_backend import _narrow_task_manager, _resolvable, task_manager_for

    tm = _narrow_task_manager("arc_easy")
    assert tm is not None and "arc_easy" in tm.all_tasks and len(tm.all_tasks) < 50
    assert task_manager_for("arc_easy") is tm  # what check_probes and probe_scores load from
    assert {Path(e.yaml_path).parent.name for e in tm.task_index.values() if e.yaml_path} == {"arc"}
    assert _narrow_task_manager("ai2_arc") is None  # a tag: the tasks it gathers are found by the full index
    assert _narrow_task_manager("no_such_task_anywhere") is None

    def group(*members):
        return Entry(name="g", kind=Kind.GROUP, yaml_path=None, cfg={"group": "g", "task": list(members)})

    task = Entry(name="t", kind=Kind.TASK, yaml_path=None, cfg={"task": "t"})
    assert _resolvable({"g": group("t", {"task": "inline", "dataset_path": "d"}, {"task": "t", "num_fewshot": 5}), "t": task}, "g", set())
    assert not _resolvable({"g": group({"task": "elsewhere", "num_fewshot": 25}), "t": task}, "g", set())  # overrides of a missing task
    assert not _resolvable({"g": group("t", "elsewhere"), "t": task}, "g", set())
    assert not _resolvable({"g": group({"group": "sub", "task": ["elsewhere"]}), "t": task}, "g", set())
    tag = Entry(name="tg", kind=Kind.TAG, yaml_path=None, cfg=None)
    assert not _resolvable({"g": group("t", "tg"), "t": task, "tg": tag}, "g", set())  # a tag member: the full index


def test_forgetting_compares_the_tuned_model_with_the_base(measured, cache):
    """After 4 steps at lr 5e-3 (high for this model), the tuned perplexity differs from the base's,
    and the base figure is the untrained model's own: the tuned column really is the tuned model."""
    from harness import models
    from harness.config import load_spec

    ppl = measured["metrics"]["forgetting"]["general_ppl"]
    assert abs(ppl["tuned"] - ppl["base"]) > 1e-4 * ppl["base"], ppl
    spec = load_spec(["debug=smoke"])
    fresh = models.load(spec.model, seed=measured["config"]["seed"], dtype=torch.float32, device="cpu")
    base = evaluate.probe_scores(fresh.model, fresh.tokenizer, ["general_ppl"], limit=ppl["n"],
                                 batch_size=measured["config"]["eval"]["batch_size"])
    assert base["general_ppl"].mean == pytest.approx(ppl["base"], rel=1e-6)
    assert ppl["drop"] == pytest.approx(ppl["tuned"] - ppl["base"])  # lower is better: drop = tuned − base
