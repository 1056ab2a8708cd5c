"""Rendering a report: one self-contained HTML page and the same content as Markdown.

A report is a title, a subtitle and a list of blocks (headings, paragraphs, lists, tables, plots).
Text cells are plain strings or ``Cfg`` (a configuration's name with its full settings), or lists of
both. In the HTML every string is ``html.escape``d, a ``Cfg`` links to its row in the
configurations table and shows its settings on hover, plots are base64 PNGs and there is no script.
In the Markdown every string is escaped (``md_escape``), so a record cannot inject HTML, links or
emphasis; plots are ``plots/<name>.png`` files beside it.
"""

from __future__ import annotations

import base64
import html
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from harness import charts
from harness.atomic import write_bytes, write_text


@dataclass(frozen=True)
class Cfg:
    """A configuration's name in the report: the label, and its full settings one hover/click away."""
    label: str
    config: str
    anchor: str
    flag: str = ""  # "⚠ collapsed general_mc": shown after the name


@dataclass(frozen=True)
class Link:
    """A link to a file (a run's record), by its path relative to the report; escaped and
    percent-encoded, so a path cannot become markup or a ``javascript:`` URL."""
    label: str
    href: str


@dataclass
class Report:
    title: str
    subtitle: str
    # ("h2", text) | ("p", cell) | ("list", [cell]) | ("table", headers, rows, row_classes) | ("plot", Plot)
    # | ("details", summary, [block]); a cell is a str, a Cfg, or a list of both
    blocks: list



CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;max-width:1020px;margin:1.2em auto;padding:0 1em;color:#222}
h1{font-size:1.6em;margin:.2em 0}h2{font-size:1.2em;border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.4em}
.sub{color:#666;margin-top:0}table{border-collapse:collapse;margin:.5em 0;font-size:13px}
th,td{border:1px solid #ddd;padding:3px 8px;text-align:left;vertical-align:top}th{background:#f3f3f3}
tr.oom td{background:#fff4e0}tr.fail td{background:#fde8e8}tr.ok td:first-child{border-left:3px solid #2a9d55}
a.cfg{color:#0b4f8a;text-decoration:none;border-bottom:1px dotted #0b4f8a;white-space:nowrap}.flag{color:#b00000;white-space:nowrap}
tr:target td{background:#fffbd6}summary{cursor:pointer;color:#0b4f8a}figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:12.5px}
"""


def _html_cell(cell) -> str:
    e = html.escape
    if isinstance(cell, list):
        return "".join(_html_cell(c) for c in cell)
    if isinstance(cell, Link):
        return f'<a href="{e(quote(cell.href))}">{e(cell.label)}</a>'
    if isinstance(cell, Cfg):
        flag = f' <span class="flag">{e(cell.flag)}</span>' if cell.flag else ""
        return f'<a class="cfg" href="#{e(cell.anchor)}" title="{e(cell.config)}">{e(cell.label)}</a>{flag}'
    return e(str(cell))


def to_html(report: Report) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           f"<title>{e(report.title)}</title><style>{CSS}</style></head><body>",
           f"<h1>{e(report.title)}</h1>", f'<p class="sub">{e(report.subtitle)}</p>']
    for block in report.blocks:
        kind = block[0]
        if kind == "h2":
            out.append(f"<h2>{e(block[1])}</h2>")
        elif kind == "p":
            out.append(f"<p>{_html_cell(block[1])}</p>")
        elif kind == "list":
            out.append("<ul>" + "".join(f"<li>{_html_cell(item)}</li>" for item in block[1]) + "</ul>")
        elif kind == "table":
            headers, rows, classes = block[1:4]
            anchored = len(block) > 4  # the configurations table: each row is the target of its names' links
            if anchored:  # folded: one click away (a link to a row inside opens it), and the page stays short
                out.append(f"<details><summary>full settings of the {len(rows)} configurations</summary>")
            out.append("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr></thead><tbody>")
            for i, row in enumerate(rows):
                cls = f' class="{e(classes[i])}"' if i < len(classes) and classes[i] else ""
                rid = f' id="{e(row[1].anchor)}"' if anchored else ""
                out.append(f"<tr{rid}{cls}>" + "".join(f"<td>{_html_cell(c)}</td>" for c in row) + "</tr>")
            out.append("</tbody></table>" + ("</details>" if anchored else ""))
        elif kind == "plot":
            p = block[1]
            data = base64.b64encode(p.png).decode("ascii")
            out.append(f'<figure id="plot-{e(p.name)}"><img alt="{e(p.title)}" src="data:image/png;base64,{data}">'
                       f"<figcaption>{e(p.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)


_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~])")


def md_escape(value) -> str:
    """Text safe in Markdown: every character that could start markup (emphasis, links, raw HTML,
    headings, table cells) is backslash-escaped, and a newline becomes a space."""
    return _MD_SPECIAL.sub(r"\\\1", str(value).replace("&", "&amp;")).replace("\n", " ").replace("\r", " ")


def _md_cell(cell) -> str:
    if isinstance(cell, list):
        return "".join(_md_cell(c) for c in cell)
    if isinstance(cell, Cfg):
        return md_escape(cell.label) + (" " + md_escape(cell.flag) if cell.flag else "")
    if isinstance(cell, Link):
        return f"[{md_escape(cell.label)}]({quote(cell.href)})"
    return md_escape(cell)


def to_markdown(report: Report) -> str:
    out = [f"# {md_escape(report.title)}", "", f"_{md_escape(report.subtitle)}_", ""]
    for block in report.blocks:
        kind = block[0]
        if kind == "h2":
            out += [f"## {md_escape(block[1])}", ""]
        elif kind == "p":
            out += [_md_cell(block[1]), ""]
        elif kind == "list":
            out += [f"- {_md_cell(item)}" for item in block[1]] + [""]
        elif kind == "table":
            headers, rows = block[1:3]
            out.append("| " + " | ".join(md_escape(h) for h in headers) + " |")
            out.append("|" + "---|" * len(headers))
            out += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows]
            out.append("")
        elif kind == "plot":
            p = block[1]
            out += [f"### {md_escape(p.title)}", "", f"![{md_escape(p.title)}](plots/{p.name}.png)", "", f"_{md_escape(p.caption)}_", ""]
    return "\n".join(out)


def write(report: Report, figures: list[charts.Plot], out_dir: Path) -> tuple[Path, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "plots").mkdir(exist_ok=True)
    for p in figures:
        write_bytes(out_dir / "plots" / f"{p.name}.png", p.png)
    html_path, md_path = out_dir / "report.html", out_dir / "report.md"
    write_text(html_path, to_html(report))
    write_text(md_path, to_markdown(report))
    return html_path, md_path
