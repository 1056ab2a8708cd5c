"""`harness report`: a self-contained HTML page + Markdown from a fixture results directory.

Fixtures: tests/fixtures/results/mixed (two sweeps, oom and error points, a corrupt file, hostile
strings) and tests/fixtures/regress/* — remade by tests/fixtures/make_fixtures.py.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from harness import regress, report

FIXTURES = Path(__file__).parent / "fixtures"
MIXED = FIXTURES / "results" / "mixed"
PLOTS = ("memory_vs_rank", "throughput", "score_vs_forgetting", "memory_vs_score", "oom_boundary", "advisor_vs_measured")


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
    # embedded, not linked: six base64 PNGs and nothing fetched from anywhere
    assert len(re.findall(r'src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"', html)) == len(PLOTS)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html


def test_report_headline_tables_and_failures(built):
    _, html, md = built
    head = md.split("## What was run")[0]  # the first screen answers the question
    assert "| lowest memory | qlora r=16 | 0.5" in head
    assert "| fastest | lora r=4 |" in head
    assert "| best task score | dora r=64 |" in head
    assert "| least forgetting | qlora r=16 |" in head
    assert "Pareto set (peak memory ↓, throughput ↑, task score ↑, forgetting ↓): " in head
    assert "## Sweep: rank_ablation" in md and "## Sweep: memory_budget" in md and "## Runs outside any sweep" in md
    assert "| full batch_size=16 | 1 oom | ≥ 1.50 |" in md  # a point that did not fit shows where it stopped
    assert "RuntimeError" in md and "1 error" in md
    assert "torch 2.13.0+cpu" in md and "AMD EPYC" in md
    assert md.count("## ") >= 6


def test_advisor_estimate_is_drawn_for_every_successful_run(built):
    pytest.importorskip("advisor.memory", reason="the advisor's memory model is not in this tree")
    _, _, md = built
    assert "Median |error|" in md.split("### Advisor estimate vs measured peak memory")[1]
    assert "over 15 runs" in md  # the 15 ok records of the fixture, none left out


def test_report_escapes_strings_from_records(built):
    _, html, _ = built
    assert "<script>alert" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html


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


def test_report_shows_a_regress_result_found_in_the_results_dir(tmp_path):
    base, cand = tmp_path / "base", tmp_path / "cand"
    shutil.copytree(FIXTURES / "regress" / "baseline", base)
    shutil.copytree(FIXTURES / "regress" / "slow", cand)
    assert regress.main(["--baseline", str(base), "--candidate", str(cand), "--json"]) == 1
    assert (cand / report.REGRESS_FILE).exists()
    assert report.main([str(cand), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    head = md.split("## What was run")[0]
    assert "## Regression check" in head and "Verdict: REGRESSION — 8 regression(s)" in head
    assert re.search(r"\| lora \| tokens_per_s \| 78\.\d .* \| ×0\.700 \[0\.6\d\d, 0\.7\d\d\] \| regression \|", md)


def test_pareto_mask_uses_declared_directions():
    pts = pd.DataFrame({"peak_memory_gb": [1.0, 2.0, 1.5, 1.0], "task_score": [0.5, 0.9, 0.6, 0.4]})
    # lower memory and higher score win: (1.0, 0.5) and (2.0, 0.9) and (1.5, 0.6) are all on the front;
    # (1.0, 0.4) is dominated by (1.0, 0.5)
    assert report.pareto_mask(pts, ["peak_memory_gb", "task_score"]).tolist() == [True, True, True, False]


def test_point_labels_name_what_varies_within_a_method():
    frame = report.load_frame(MIXED)
    labels = set(report.tidy(frame)["point"])
    assert {"lora r=4", "lora r=64", "dora r=16", "qlora r=16", "lora r=16 batch_size=4 budget_gb=1.5"} <= labels
    # one label per configuration: repeats share it, different settings never do
    runs = report.tidy(frame)
    cols = report._identity_cols(frame)
    keys = frame[cols].map(report._text).astype(str).agg("|".join, axis=1)
    assert runs.groupby("point").apply(lambda g: keys[g.index].nunique()).max() == 1


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(_chromium() is None, reason="no chromium on PATH (apt-get install -y chromium) to render the HTML")
def test_html_renders_in_headless_chromium(built, tmp_path):
    from PIL import Image, ImageStat

    out, _, _ = built
    shot = tmp_path / "shot.png"
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--no-first-run", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400",
           f"--screenshot={shot}", (out / "report.html").resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=120, check=False)
    assert shot.exists(), "chromium wrote no screenshot"
    image = Image.open(shot).convert("L")
    assert image.size == (1200, 2400)
    # A blank or error page is one flat colour; text, tables and plots give a wide spread of grey levels.
    assert ImageStat.Stat(image).stddev[0] > 20
    dark = sum(image.histogram()[:128]) / (image.width * image.height)
    assert 0.005 < dark < 0.5  # some ink (text, lines), but not a black page
