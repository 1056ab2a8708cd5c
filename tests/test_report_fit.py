"""The report's first screen fits: labels of at most 40 characters that still tell runs apart (a
long differing path or run id cut to what differs, the whole value on hover), hub models named by
their repository, and "Which configuration wins where" without sideways scrolling at 1280 × 800
in a real Chromium."""

from __future__ import annotations

import html
import re
import subprocess
from pathlib import Path

from harness import analysis, report
from harness.config import load_spec
from tests.test_report import _chromium, make_record, mc, ppl, write_records

START = "results/main/lora-smollm2-135m-tickets-{}.json"


def chained_runs() -> list[dict]:
    """The issue's case: DPO runs chained from different SFT records, eval sizes and batching also
    differing; written out whole, the longest label was 114 characters."""
    recs = []
    for i, (start, n_eval, batching) in enumerate([("0a6ae38dea", 100, "by_length"), ("0a6ae38dea", 100, "shuffled"),
                                                   ("7f3c21b9e0", 100, "by_length"), ("7f3c21b9e0", 64, "shuffled"),
                                                   ("c4d0e5f6a7", 64, "by_length")]):
        drop = 0.03 * i
        rec = make_record(f"dpo-{i}", "dpo", task="tickets_prefs", n_eval=n_eval, score=0.5 + 0.05 * i, tps=90 + 7 * i,
                          mem=1.5 + 0.1 * i, probes={"general_mc": (mc(0.7), mc(0.7 - drop)), "general_ppl": (ppl(44.0), ppl(44.0 + i))})
        rec["config"]["method"]["init_from"] = "/home/someone/tunebench/" + START.format(start).replace("main", "r&d<1>")
        rec["config"]["train"]["batching"] = batching
        recs.append(rec)
    return recs


def hub_runs() -> list[dict]:
    recs = []
    for i, (path, rev) in enumerate([("meta-llama/Llama-3.2-1B", "4e20de3"), ("/models/checkpoints/my-sft-v2/", None)]):
        for r in (8, 16):
            rec = make_record(f"hub-{i}-{r}", "lora", r=r, score=0.4 + 0.1 * i + r / 100)
            rec["config"]["model"] = {"name": "hub", "source": "pretrained", "name_or_path": path, "revision": rev}
            recs.append(rec)
    return recs


def test_hub_models_are_named_by_their_repository_or_folder():
    spec = load_spec(["model=hub", "model.name_or_path=meta-llama/Llama-3.2-1B", "model.revision=4e20de3"])
    assert spec.run_id.startswith("lora-Llama-3.2-1B-tickets-") and spec.model.name_or_path == "meta-llama/Llama-3.2-1B"
    local = load_spec(["model=hub", "model.name_or_path=/models/checkpoints/my-sft-v2/"])
    assert local.run_id.startswith("lora-my-sft-v2-tickets-")
    assert spec.run_id != load_spec(["model=hub", "model.name_or_path=meta-llama/Llama-3.2-1B"]).run_id  # revision counts


def test_two_hub_models_in_one_report_are_labelled_by_their_names(tmp_path):
    runs = analysis.tidy(analysis.load_frame(write_records(tmp_path / "runs", hub_runs())))
    assert set(runs["model"]) == {"Llama-3.2-1B", "my-sft-v2"}
    assert {g.split(" · ")[0] for g in runs["group"]} == {"Llama-3.2-1B", "my-sft-v2"}
    assert set(runs["label"]) == {"lora r=8", "lora r=16"}  # the model is the group, not a path in every label
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Llama-3.2-1B · tickets" in md and "my-sft-v2 · tickets" in md and "hub ·" not in md


def test_labels_are_at_most_40_characters_with_the_full_value_on_hover(tmp_path):
    runs = analysis.tidy(analysis.load_frame(write_records(tmp_path / "runs", chained_runs())))
    labels = dict(zip(runs["run_id"], runs["label"]))
    assert max(map(len, labels.values())) <= 40 and len(set(labels.values())) == 5
    # the paths are cut to the part that tells the starts apart, and words need no key to be read
    assert labels["dpo-0"] == "dpo eval_n=100 …0a6a… by_length" and labels["dpo-3"] == "dpo eval_n=64 …7f3c… shuffled"
    out = tmp_path / "out"
    assert report.main([str(tmp_path / "runs"), "--out", str(out)]) == 0
    page = (out / "report.html").read_text()
    full = "/home/someone/tunebench/results/r&d<1>/lora-smollm2-135m-tickets-0a6ae38dea.json"
    assert f"init_from={html.escape(full)}" in page and full not in page  # on hover, escaped


def _measure(page: Path, tmp_path: Path) -> dict[str, int]:
    """The page's scroll width and the first table's right edge, measured by Chromium at 1280 × 800."""
    probe = tmp_path / "measured.html"
    script = ("<script>const t=[...document.querySelectorAll('h2')].find(h=>h.textContent.includes('Which configuration wins where'))"
              ".nextElementSibling;while(t&&t.tagName!=='TABLE'&&!t.querySelector('table'))t=t.nextElementSibling;"
              "const table=t.tagName==='TABLE'?t:t.querySelector('table');"
              "document.body.dataset.scroll=document.documentElement.scrollWidth;"
              "document.body.dataset.table=Math.ceil(table.getBoundingClientRect().right);</script>")
    probe.write_text(page.read_text().replace("</body>", script.replace("const t=", "let t=") + "</body>"))
    cmd = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run",
           "--force-device-scale-factor=1", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1280,800",
           "--virtual-time-budget=3000", "--dump-dom", probe.resolve().as_uri()]
    dom = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    found = dict(re.findall(r'data-(scroll|table)="(\d+)"', dom))
    assert set(found) == {"scroll", "table"}, dom[-2000:]
    return {k: int(v) for k, v in found.items()}


def test_which_configuration_wins_where_fits_1280_pixels_in_chromium(tmp_path):
    src = write_records(tmp_path / "runs", chained_runs() + hub_runs())
    out = tmp_path / "out"
    assert report.main([str(src), "--out", str(out)]) == 0
    size = _measure(out / "report.html", tmp_path)
    assert size["table"] <= 1280 and size["scroll"] <= 1280, size
