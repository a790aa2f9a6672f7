"""A report as a list of blocks, rendered to Markdown or to one self-contained HTML page."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    row_classes: list[str] = field(default_factory=list)  # "pass" / "fail" per row, for the HTML colours
    folded: str = ""  # the HTML shows the table folded (<details>) under this summary line


@dataclass
class Image:
    filename: str  # written next to report.md; embedded as a data URI in report.html
    png: bytes
    alt: str


@dataclass
class Block:
    kind: str  # "h1", "h2", "p", "pre" (text content), "table", "image" (the content's type says which)
    content: str | Table | Image


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    out = []
    for b in blocks:
        t = b.content
        if isinstance(t, Table):
            out.append("| " + " | ".join(map(_md_cell, t.headers)) + " |")
            out.append("|" + "---|" * len(t.headers))
            out.extend("| " + " | ".join(map(_md_cell, row)) + " |" for row in t.rows)
            out.append("")
        elif isinstance(t, Image):
            out.append(f"![{t.alt}]({t.filename})\n")
        elif b.kind in ("h1", "h2"):
            out.append(f"{'#' * int(b.kind[1])} {t}\n")
        elif b.kind == "p":
            out.append(f"{t}\n")
        elif b.kind == "pre":
            out.append(f"```yaml\n{t.rstrip()}\n```\n")
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
tr.pass td:first-child { border-left: 6px solid #2e7d32; }
tr.fail td:first-child { border-left: 6px solid #c62828; }
tr.fail { background: #fdecea; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; }
img { max-width: 100%; border: 1px solid #ddd; }
details { margin: 0.6em 0 1.4em; }
summary { cursor: pointer; color: #444; }
"""

# Marks the page once loaded: data-images-ok (every <img> decoded) and data-script-errors, for headless checks.
CHECK_SCRIPT = """
window.__errors = 0;
window.addEventListener('error', function () { window.__errors += 1; }, true);
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute('data-images', String(imgs.length));
  document.body.setAttribute('data-images-ok', String(ok));
  document.body.setAttribute('data-script-errors', String(window.__errors));
});
"""


def to_html(blocks: list[Block], title: str) -> str:
    e = html.escape
    body = []
    for b in blocks:
        t = b.content
        if isinstance(t, Table):
            rows = []
            for i, row in enumerate(t.rows):
                cls = f' class="{t.row_classes[i]}"' if i < len(t.row_classes) and t.row_classes[i] else ""
                rows.append(f"<tr{cls}>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>")
            table = (
                "<table><thead><tr>"
                + "".join(f"<th>{e(h)}</th>" for h in t.headers)
                + "</tr></thead><tbody>"
                + "".join(rows)
                + "</tbody></table>"
            )
            body.append(f"<details><summary>{e(t.folded)}</summary>{table}</details>" if t.folded else table)
        elif isinstance(t, Image):
            data = base64.b64encode(t.png).decode("ascii")
            body.append(f'<img alt="{e(t.alt)}" src="data:image/png;base64,{data}">')
        elif b.kind in ("h1", "h2"):
            body.append(f"<{b.kind}>{e(t)}</{b.kind}>")
        elif b.kind == "p":
            body.append(f"<p>{e(t)}</p>")
        elif b.kind == "pre":
            body.append(f"<pre>{e(t)}</pre>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(title)}</title><style>{STYLE}</style><script>{CHECK_SCRIPT}</script></head>\n"
        "<body>\n" + "\n".join(body) + "\n</body></html>\n"
    )
