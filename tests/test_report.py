"""`harness report`: a self-contained HTML page + Markdown whose claims are true.

Fixtures: tests/fixtures/results/mixed (two sweeps, oom and error points, a corrupt file, hostile
strings) and tests/fixtures/regress/*, remade by tests/fixtures/make_fixtures.py. The claims tests
build their own records here, with forgetting entries made by ``harness.forgetting.entry`` itself
(so a record carries exactly the sign convention the harness writes: ``delta = base − tuned``).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import analysis, regress, report
from harness.evaluate import Score
from harness import forgetting
from harness.atomic import write_json

FIXTURES = Path(__file__).parent / "fixtures"
MIXED = FIXTURES / "results" / "mixed"
REPO = Path(__file__).resolve().parent.parent
PLOTS = ("throughput", "memory_vs_score", "score_vs_forgetting", "memory_vs_rank", "oom_boundary", "advisor_vs_measured")
DEFAULT_LR = {"lora": 2e-4, "dora": 2e-4, "qlora": 2e-4, "full": 2e-5, "grpo": 5e-5}


# ---------------------------------------------------------------- synthetic records


def mc(acc: float, n: int = 112) -> Score:
    """A multiple-choice probe score with its binomial stderr, as lm-eval reports it."""
    return Score(acc, math.sqrt(acc * (1 - acc) / (n - 1)), n, 1.0, "acc", True)


def ppl(value: float, rel_se: float = 0.06) -> Score:
    return Score(value, value * rel_se, 46, 1.0, "word_perplexity", False)


def make_record(run_id: str, method: str, *, task: str = "tickets", score: float = 0.5, n_eval: int = 80, r=None,
                lr=None, steps: int = 16, batch: int = 8, n_train: int = 600, epochs: int = 1, tps: float = 100.0,
                mem: float = 2.0, probes: dict | None = None, sweep: str | None = None, execution: dict | None = None,
                status: str = "ok") -> dict:
    rec = {
        "schema_version": 1, "run_id": run_id, "status": status, "error": None,
        "config": {
            "model": {"name": "smollm2-135m", "source": "gguf"},
            "method": {"name": method, "default_lr": DEFAULT_LR.get(method, 1e-4), "r": r if method != "full" else None,
                       "alpha": None, "dropout": 0.0 if method == "full" else 0.05, "targets": "all-linear",
                       "quantize": None, "use_dora": method == "dora", "inner": None, "world_size": 1, "options": {}},
            "task": {"name": task, "seed": 0, "n_train": n_train, "metric": "exact_match"},
            "train": {"max_steps": steps, "epochs": epochs, "batch_size": batch, "grad_accum": 1, "lr": lr,
                      "max_seq_len": 256, "optimizer": "adamw", "save": "none", "log_every": 1},
            "eval": {"limit": n_eval, "batch_size": 16, "probes": sorted(probes or {}), "probe_limit": 112, "enabled": True},
            "seed": 0, "repeat": 0, "results_dir": "x", "budget_gb": None, "timeout_s": None,
        },
        "metrics": {"peak_memory_gb": mem, "memory_kind": "cpu_rss_delta", "tokens_per_s": tps, "mfu": tps * 4e-3,
                    "task_score": score, "task_score_stderr": math.sqrt(score * (1 - score) / n_eval), "task_eval_n": n_eval,
                    "train_loss_last": 0.5, "wall_s": 60.0,
                    "forgetting": {name: forgetting.entry(base, tuned) for name, (base, tuned) in (probes or {}).items()}},
        "hardware": {"device": "cpu", "device_name": "test CPU", "cpu_count": 2},
        "provenance": {"git_commit": "abc", "python": "3.11.7"},
        "artifacts": [],
    }
    if sweep:
        rec["sweep"] = {"name": sweep}
    if execution:
        rec["execution"] = execution
    return rec


def write_records(directory: Path, records: list[dict]) -> Path:
    for rec in records:
        write_json(directory / f"{rec['run_id']}.json", rec)
    return directory


def build_md(tmp_path: Path, records: list[dict]) -> tuple[str, str]:
    src = write_records(tmp_path / "runs", records)
    out = tmp_path / "out"
    assert report.main([str(src), "--out", str(out)]) == 0
    return (out / "report.md").read_text(), (out / "report.html").read_text()


def headline_row(md: str, group: str) -> str:
    head = md.split("## What was run")[0]
    rows = [line for line in head.splitlines() if line.startswith(f"| {analysis_md(group)} (")]
    assert len(rows) == 1, (group, head)
    return rows[0]


def analysis_md(text: str) -> str:
    return report.md_escape(text)


# ---------------------------------------------------------------- claims with known answers


FORGETTING_RUNS = [
    # the aggressive full fine-tune: best task score, fastest, least memory, and it destroys both probes
    ("collapse", "full", dict(lr=1e-3, score=0.90, tps=300.0, mem=1.0,
                              probes={"general_mc": (mc(0.705), mc(0.268)), "general_ppl": (ppl(44.0), ppl(4.5e7))})),
    ("gentle", "lora", dict(r=8, score=0.60, tps=100.0, mem=2.0,
                            probes={"general_mc": (mc(0.705), mc(0.688)), "general_ppl": (ppl(44.0), ppl(43.5))})),
    # perplexity improved a lot: a drop in the number, not in the model; never a "drop"
    ("better", "full", dict(lr=1e-4, score=0.70, tps=120.0, mem=2.5,
                            probes={"general_mc": (mc(0.705), mc(0.705)), "general_ppl": (ppl(44.0), ppl(20.0))})),
]


def test_a_run_that_collapses_a_probe_is_flagged_never_least_forgetting(tmp_path):
    md, html = build_md(tmp_path, [make_record(name, m, steps=48, batch=4, **kw) for name, m, kw in FORGETTING_RUNS])
    row = headline_row(md, "tickets · 48 steps × 4 examples")
    cells = [c.strip() for c in row.split(" | ")]
    least = cells[-1]
    assert least.startswith("no significant drop: full lr=1e-4, lora lr=2e-4")
    assert "flagged: full lr=1e-3 ⚠ collapsed general\\_mc, general\\_ppl" in least
    assert "full lr=1e-3" not in least.split("flagged:")[0]
    # where the collapsed run does win (score, speed, memory) it is named, with its flag: nothing is hidden
    assert cells[1].startswith("full lr=1e-3 ⚠ collapsed general\\_mc, general\\_ppl 0.900")
    # per probe, in the probe's own unit, never averaged
    forget = md.split("## Forgetting per probe")[1].split("## ")[0]
    assert "70.5% → 26.8%: -43.7 pts ± 6.0 ⚠ collapsed" in forget and "⚠ collapsed" in forget
    assert "ppl 44 → 4.5e+07 (×1.02e+06, Δlog +13.838 ± 0.085) ⚠ collapsed" in forget
    assert "ppl 44 → 20 (×0.455, Δlog -0.788" in forget  # perplexity fell: better, not flagged
    better = next(line for line in forget.splitlines() if line.startswith("| full lr=1e-4"))
    assert better.endswith("| 0 of 2 |") and "⚠" not in better
    # the same in the HTML: the name is a link to the configuration's full settings, shown on hover
    assert re.search(r'<a class="cfg" href="#cfg-\d+" title="method=full, [^"]*lr=1e-3[^"]*">full lr=1e-3</a> '
                     r'<span class="flag">⚠ collapsed general_mc, general_ppl</span>', html)


def test_least_forgetting_is_nobody_when_every_run_dropped(tmp_path):
    runs = [make_record("collapse", "full", lr=1e-3, probes={"general_mc": (mc(0.705), mc(0.268))}),
            make_record("dropped", "lora", r=8, probes={"general_mc": (mc(0.705), mc(0.55))})]  # 15.5 pts, 2.5 stderr
    md, _ = build_md(tmp_path, runs)
    least = headline_row(md, "tickets · 16 steps × 8 examples").split(" | ")[-1]
    assert least.startswith("none without a significant drop; flagged: ")
    assert "full ⚠ collapsed general\\_mc" in least and "lora ⚠ 1/1 probes dropped" in least


def test_grpo_on_arithmetic_never_wins_best_score_among_tickets_runs(tmp_path):
    runs = [make_record("grpo", "grpo", task="arithmetic", r=16, score=0.95, tps=500.0, mem=0.5),
            make_record("lora", "lora", r=16, score=0.40),
            make_record("full", "full", score=0.55),
            make_record("full-long", "full", score=0.80, steps=64)]  # 4× the training budget: its own group
    md, _ = build_md(tmp_path, runs)
    row = headline_row(md, "tickets · 16 steps × 8 examples")
    assert "| full 0.550 ± 0.056 (n=80);" in row and "grpo" not in row and "0.800" not in row
    head = md.split("## Forgetting")[0].split("## What was run")[0]
    assert "- arithmetic · 16 steps × 8 examples: grpo scores 0.950" in head  # its own group, named with its task
    assert "- tickets · 64 steps × 8 examples: full scores 0.800" in head
    pareto = next(line for line in head.splitlines() if line.startswith("- tickets · 16 steps × 8 examples ("))
    assert "grpo" not in pareto


def test_labels_show_only_what_differs_in_canonical_form(tmp_path):
    runs = [make_record("l8", "lora", r=8), make_record("l16", "lora", r=16),
            make_record("f3", "full", lr=1e-3), make_record("f4", "full", lr=1e-4)]
    frame = analysis.load_frame(write_records(tmp_path / "runs", runs))
    labels = dict(zip(frame["run_id"], analysis.tidy(frame)["label"]))
    # r splits LoRA's runs and lr splits full's; dropout (0.05 vs 0) differs only between methods: not named
    assert labels == {"l8": "lora r=8 lr=2e-4", "l16": "lora r=16 lr=2e-4", "f3": "full lr=1e-3", "f4": "full lr=1e-4"}
    one = analysis.tidy(analysis.load_frame(write_records(tmp_path / "one", [make_record("a", "lora", r=16),
                                                                             make_record("b", "full")])))
    assert set(one["label"]) == {"lora", "full"}  # nothing differs within a method: the method alone
    md, html = build_md(tmp_path / "md", runs)
    configs = md.split("## Configurations")[1]
    assert re.search(r"\| tickets · 16 steps × 8 examples \| lora r=8 lr=2e-4 \| l8 \| method=lora, model=smollm2-135m, "
                     r"task=tickets, r=8, .*lr=2e-4, n\\_train=600, steps=16, .*dropout=0\.05", configs)
    assert 'id="cfg-' in html and 'title="method=lora, model=smollm2-135m' in html


def test_learning_curves_appear_only_when_runs_differ_only_in_training_size(tmp_path):
    scores = {"lora": {16: 0.20, 64: 0.50, 256: 0.75, 512: 0.80}, "full": {16: 0.10, 64: 0.30, 256: 0.60, 512: 0.85}}
    runs = [make_record(f"{m}-{n}", m, r=16, n_train=n, steps=-1, epochs=2, score=s, sweep="data_scaling")
            for m, by_n in scores.items() for n, s in by_n.items()]
    md, html = build_md(tmp_path, runs)
    curves = md.split("## Learning curves")[1].split("## ")[0]
    # 90% of lora's best (0.80) is 0.72, first reached at 256; of full's (0.85) 0.765, only at 512
    assert re.search(r"\| tickets · smollm2-135m \| lora \| 16: 0\.200 ± 0\.045, 64: 0\.500 .* \| 0\.800 at 512 \| 256 \|", curves)
    assert re.search(r"\| tickets · smollm2-135m \| full \| .* \| 0\.850 at 512 \| 512 \|", curves)
    assert 'id="plot-learning_curves"' in html
    # each size is its own training budget, so lora and full are compared size by size
    assert "tickets · 2 epochs × 256 examples (2 configs)" in md
    two = [make_record(f"lora-{n}", "lora", r=16, n_train=n, steps=-1, epochs=2) for n in (16, 64)]
    plain, _ = build_md(tmp_path / "plain", two + [make_record("other", "full")])
    assert "## Learning curves" not in plain  # two sizes outside a data_scaling sweep: not a curve


def test_concurrent_throughput_is_marked(tmp_path):
    runs = [make_record("alone", "lora", r=16, tps=150.0), make_record("shared", "full", tps=90.0,
                                                                     execution={"concurrency": 2})]
    md, _ = build_md(tmp_path, runs)
    assert "| 90.0 † |" in md and "| 150.0 |" in md
    assert "† throughput measured while other points shared the machine" in md


# ---------------------------------------------------------------- the fixture report


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    assert report.main([str(MIXED), "--out", str(out)]) == 0
    return out, (out / "report.html").read_text(), (out / "report.md").read_text()


def test_report_has_every_plot_in_html_and_markdown(built):
    out, html, md = built
    for name in PLOTS:
        assert f'id="plot-{name}"' in html, name
        assert f"](plots/{name}.png)" in md, name
        assert (out / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # embedded, not linked: base64 PNGs and nothing fetched from anywhere
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', html)) == len(PLOTS)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html


def test_report_headline_groups_tables_and_failures(built):
    _, _, md = built
    row = headline_row(md, "tickets · 8 steps × 8 examples")
    assert "| lora r=4 83.3 tokens/s | qlora r=16 0.56 GB |" in row
    assert "## Sweep: rank\\_ablation" in md and "## Sweep: memory\\_budget" in md and "## Runs outside a sweep" in md
    assert "| tickets · 8 steps × 16 examples | full | 1 oom | ≥ 1.50 |" in md  # where a point that did not fit stopped
    assert "RuntimeError" in md and "1 error" in md
    assert "torch 2.13.0+cpu" in md and "AMD EPYC" in md


def test_advisor_estimate_is_drawn_for_every_successful_run(built):
    pytest.importorskip("advisor.memory.estimate", reason="the advisor's memory model is not in this tree")
    _, _, md = built
    assert "Median \\|error\\|" in md.split("### Advisor estimate vs measured peak memory")[1]
    assert "over 15 runs" in md  # the 15 ok records of the fixture, none left out


def test_report_escapes_strings_from_records(built):
    _, html, md = built
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # Markdown renders raw HTML, links and emphasis: a record's text must not produce any
    text = "\n".join(line for line in md.splitlines() if not line.startswith("!["))  # our own image links
    assert not re.search(r"(?<!\\)[<>\[\]]", text), "unescaped markup in report.md"
    assert "\\<img src=x onerror=alert(1)\\>" in md and "\\<script\\>alert('x')\\</script\\>" in md


def test_markdown_escape_neutralises_markup():
    hostile = "**bold** [link](javascript:x) <b>x</b> a|b `code` # head"
    out = report.md_escape(hostile)
    assert out == "\\*\\*bold\\*\\* \\[link\\](javascript:x) \\<b\\>x\\</b\\> a\\|b \\`code\\` \\# head"


def test_corrupt_record_is_skipped_with_a_warning(tmp_path, capsys):
    assert report.main([str(MIXED), "--out", str(tmp_path)]) == 0
    assert "corrupt.json" in capsys.readouterr().err


def test_missing_directory_is_one_line_exit_2(tmp_path, capsys):
    assert report.main([str(tmp_path / "nope"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "does not exist" in err and "Traceback" not in err


def test_empty_directory_says_so(tmp_path, capsys):
    assert report.main([str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "no run records" in capsys.readouterr().err


def test_report_reads_every_sweep_below_the_directory(tmp_path, capsys):
    root = tmp_path / "results"
    write_records(root / "sweep_a", [make_record("a1", "lora", r=8, sweep="sweep_a"), make_record("a2", "lora", r=16, sweep="sweep_a")])
    write_records(root / "adhoc", [make_record("b1", "full")])
    write_records(root / "adhoc" / "artifacts" / "b1", [make_record("not-a-run", "full")])  # beside a run: not read
    write_records(root / "adhoc" / "evals", [make_record("an-eval", "full")])
    assert report.main([str(root), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert md.count("_3 runs (3 ok)") == 1
    assert "## Sweep: sweep\\_a" in md and "## Runs outside a sweep: folder adhoc" in md
    assert "not-a-run" not in md and "an-eval" not in md


def test_report_of_the_committed_results_reads_every_record():
    records = [p for p in (REPO / "results").rglob("*.json")
               if not {"evals", "artifacts"} & set(p.parts) and {"run_id", "status"} <= set(json.loads(p.read_text()))]  # a run record, as the loader reads it
    frame = analysis.load_frame(REPO / "results")
    assert len(frame) == len(records) > 0


def test_report_shows_a_regress_result(tmp_path):
    base, cand = tmp_path / "base", tmp_path / "cand"
    shutil.copytree(FIXTURES / "regress" / "baseline", base)
    shutil.copytree(FIXTURES / "regress" / "slow", cand)
    verdict = tmp_path / "verdict.json"
    assert regress.main(["--baseline", str(base), "--candidate", str(cand), "--json", "--out", str(verdict)]) == 1
    assert not (cand / report.REGRESS_FILE).exists()  # the judged folder stays as it was
    assert report.main([str(cand), "--out", str(tmp_path / "out"), "--regress", str(verdict)]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    head = md.split("## What was run")[0]
    assert "## Regression check" in head and "Verdict: REGRESSION — 8 regression(s)" in head
    assert re.search(r"\| lora \| tokens\\_per\\_s \| 78\.\d .* \| ×0\.700 \\\[0\.6\d\d, 0\.7\d\d\\\] \| regression \|", md)


def test_pareto_mask_uses_declared_directions():
    pts = pd.DataFrame({"peak_memory_gb": [1.0, 2.0, 1.5, 1.0], "task_score": [0.5, 0.9, 0.6, 0.4]})
    # lower memory and higher score win: (1.0, 0.5) and (2.0, 0.9) and (1.5, 0.6) are all on the front;
    # (1.0, 0.4) is dominated by (1.0, 0.5)
    assert report.pareto_mask(pts, ["peak_memory_gb", "task_score"]).tolist() == [True, True, True, False]


# ---------------------------------------------------------------- legible from 2 to 60 configurations


def forty_configs() -> list[dict]:
    """40 configurations on one task and budget whose labels are long: rank × learning rate ×
    method, with target modules, optimizer and sequence length varying too."""
    recs = []
    grid = [(m, r, lr) for m in ("lora", "dora") for r in (1, 2, 4, 8, 16, 32, 64, 128, 256, 512) for lr in (1e-4, 3e-4)]
    for i, (method, r, lr) in enumerate(grid):
        drop = 0.02 * (i % 7)
        rec = make_record(f"run-{i:02d}", method, r=r, lr=lr, score=0.3 + 0.01 * i, tps=80 + 3 * i, mem=1 + 0.05 * i,
                          probes={"general_mc": (mc(0.7), mc(0.7 - drop)), "general_ppl": (ppl(44.0), ppl(44.0 * (1 + drop)))})
        rec["config"]["method"]["targets"] = "all-linear" if i % 3 else "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
        rec["config"]["train"]["optimizer"] = "adamw" if i % 2 else "paged_adamw_8bit"
        rec["config"]["train"]["max_seq_len"] = 256 if i % 4 else 1024
        recs.append(rec)
    return recs


@pytest.fixture(scope="module")
def forty(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("forty")
    src = write_records(tmp / "runs", forty_configs())
    report_obj, figures = report.build(src)
    html_path, _ = report.write(report_obj, figures, tmp / "out")
    return src, figures, html_path


def assert_data_keeps_half_the_width(figures) -> None:
    assert {p.name for p in figures} >= set(PLOTS)
    for p in figures:
        for x0, width in p.axes:  # each data axes' extent in the figure, after the layout engine ran
            assert width >= 0.5, (p.name, x0, width)
    assert next(p for p in figures if p.name == "throughput").axes, "the throughput plot has bars to draw"


def test_forty_configurations_keep_half_the_width_for_data(forty):
    src, figures, _ = forty
    labels = report.tidy(report.load_frame(src))["label"]
    # six settings differ: written out whole, a label ran to 104 characters; cut to 40, each still its own
    assert labels.str.len().max() <= 40 and labels.nunique() == 40
    assert any(s.startswith("lora r=1 q_pr… lr=1e-4 seq=1024 ") for s in labels)  # the full settings are on hover
    assert_data_keeps_half_the_width(figures)


def test_two_configurations_keep_half_the_width_for_data(tmp_path):
    _, figures = report.build(write_records(tmp_path / "runs", forty_configs()[:2]))
    assert_data_keeps_half_the_width(figures)


def _chromium() -> str:
    """The browser, or a skip; in CI (``CI`` set) a missing browser fails the test instead."""
    found = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not found:
        why = "no chromium on PATH (scripts/setup.sh --test installs it)"
        pytest.fail(why) if os.environ.get("CI") else pytest.skip(why)
    return found


def _screenshot(html: Path, tmp_path: Path, height: int):
    from PIL import Image

    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}",
           f"--window-size=1200,{height}", f"--screenshot={shot}", html.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=180, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    return Image.open(shot).convert("RGB")


def find_image(screen, image) -> tuple[int, int] | None:
    """(x, y) where ``image`` appears pixel for pixel in ``screen`` (PNGs are shown unscaled), else None."""
    import numpy as np

    s, p = np.asarray(screen), np.asarray(image.convert("RGB"))
    stride, width = s.shape[1] * 3, p.shape[1] * 3
    row = int(np.argmax(np.abs(np.diff(p.astype(int), axis=1)).sum(axis=(1, 2))))  # the busiest row
    data, needle = s.tobytes(), p[row].tobytes()
    at = data.find(needle)
    while at >= 0:
        y, x = divmod(at, stride)
        if x % 3 == 0 and x + width <= stride and y >= row:
            top, left = y - row, x // 3
            if np.array_equal(s[top:top + p.shape[0], left:left + p.shape[1]], p):
                return left, top
        at = data.find(needle, at + 1)
    return None


def test_forty_config_report_shows_every_plot_in_chromium(forty, tmp_path):
    import io

    from PIL import Image

    _, figures, html_path = forty
    height = 16000
    screen = _screenshot(html_path, tmp_path, height)
    assert screen.size == (1200, height)
    blank = screen.crop((0, height - 200, 1200, height)).convert("L").getextrema()
    assert blank == (255, 255), "the page is taller than the screenshot: grow `height`"
    for p in figures:
        assert find_image(screen, Image.open(io.BytesIO(p.png))) is not None, f"plot {p.name} is not shown whole"


def test_html_renders_in_headless_chromium(built, tmp_path):
    from PIL import ImageStat

    out, _, _ = built
    image = _screenshot(out / "report.html", tmp_path, 2400).convert("L")
    assert image.size == (1200, 2400)
    # A blank or error page is one flat colour; text, tables and plots give a wide spread of grey levels.
    assert ImageStat.Stat(image).stddev[0] > 20
    dark = sum(image.histogram()[:128]) / (image.width * image.height)
    assert 0.005 < dark < 0.5  # some ink (text, lines), but not a black page
