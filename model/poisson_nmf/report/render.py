"""Rendering the report's blocks (:mod:`.content`) as Markdown and as one HTML page.

The HTML page is self-contained: figures embedded as base64 ``data:`` URIs, inline CSS,
no script and no remote resource, so that it opens from disk, offline.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from .content import Block

__all__ = ["to_html", "to_markdown"]

_VERDICT_TEXT = {
    "ok": "OK: every check passed.",
    "warn": "WARN: the draws can be used, with the caveats below.",
    "fail": "FAIL: do not use these draws; the reasons are below.",
}


def _md_cell(s: str) -> str:
    return s.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: list[Block]) -> str:
    """Render the page as Markdown; figures linked from ``figures/``."""
    out: list[str] = []
    for b in blocks:
        if b.kind == "h1":
            out.append(f"# {b.text}")
        elif b.kind == "h2":
            out.append(f"## {b.text}")
        elif b.kind == "p":
            out.append(b.text)
        elif b.kind == "verdict":
            out.append(f"**Verdict: {_VERDICT_TEXT[b.text]}**")
            if b.items:
                out.append("\n".join(f"- {r}" for r in b.items))
        elif b.kind == "toc":
            out.append(" · ".join(f"[{t}](#{a})" for a, t in b.links))
        elif b.kind == "table":
            lines = [
                "| " + " | ".join(_md_cell(h) for h in b.header) + " |",
                "|" + "---|" * len(b.header),
            ]
            lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
            out.append("\n".join(lines))
        elif b.kind == "fig":
            out.append(f"![{b.text}](figures/{b.text})\n\n*{b.items[0]}*")
    return "\n\n".join(out) + "\n"


_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 0;
       color: #222; background: #fafafa; }
main { max-width: 1100px; margin: 0 auto; padding: 1.5em 2em 3em; background: #fff; }
h1 { font-size: 1.6em; margin-bottom: 0.4em; }
h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.88em; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.fail td { background: #fde8e8; } tr.warn td { background: #fff6e0; }
.verdict { padding: 0.8em 1.2em; border-radius: 6px; margin: 1em 0; }
.verdict.ok { background: #e6f4ea; border: 1px solid #7cc48f; }
.verdict.warn { background: #fff6e0; border: 1px solid #e0b050; }
.verdict.fail { background: #fde8e8; border: 1px solid #e07070; }
.verdict p { margin: 0 0 0.3em; font-weight: 600; } .verdict ul { margin: 0.3em 0 0; }
nav { font-size: 0.9em; } nav a { margin-right: 1em; }
figure { margin: 1.2em 0; } figure img { max-width: 100%; height: auto; }
figcaption { font-size: 0.85em; color: #555; max-width: 900px; }
code { background: #f3f3f3; padding: 0 0.2em; }
"""


def _html_text(s: str) -> str:
    # `code` spans, as in the Markdown
    parts = html.escape(s).split("`")
    return "".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts))


def _is_num(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def to_html(blocks: list[Block], fig_dir: Path) -> str:
    """Render the page as one HTML document; each figure read from ``fig_dir`` and embedded."""
    out: list[str] = []
    title = next((b.text for b in blocks if b.kind == "h1"), "report")
    for b in blocks:
        if b.kind == "h1":
            out.append(f"<h1>{_html_text(b.text)}</h1>")
        elif b.kind == "h2":
            out.append(f'<h2 id="{b.anchor}">{_html_text(b.text)}</h2>')
        elif b.kind == "p":
            out.append(f"<p>{_html_text(b.text)}</p>")
        elif b.kind == "verdict":
            items = "".join(f"<li>{_html_text(r)}</li>" for r in b.items)
            out.append(
                f'<div class="verdict {b.text}"><p>Verdict: {_html_text(_VERDICT_TEXT[b.text])}'
                f"</p>{f'<ul>{items}</ul>' if items else ''}</div>"
            )
        elif b.kind == "toc":
            links = "".join(f'<a href="#{a}">{_html_text(t)}</a>' for a, t in b.links)
            out.append(f"<nav>{links}</nav>")
        elif b.kind == "table":
            head = "".join(f"<th>{_html_text(h)}</th>" for h in b.header) if any(b.header) else ""
            body = []
            for r in b.rows:
                cls = ""
                if "FAIL" in r or "WARN" in r:
                    cls = ' class="fail"' if "FAIL" in r else ' class="warn"'
                cells = "".join(
                    f'<td class="num">{_html_text(c)}</td>'
                    if _is_num(c)
                    else f"<td>{_html_text(c)}</td>"
                    for c in r
                )
                body.append(f"<tr{cls}>{cells}</tr>")
            out.append(
                "<table>"
                + (f"<thead><tr>{head}</tr></thead>" if head else "")
                + f"<tbody>{''.join(body)}</tbody></table>"
            )
        elif b.kind == "fig":
            data = base64.b64encode((fig_dir / b.text).read_bytes()).decode("ascii")
            out.append(
                f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(b.text)}">'
                f"<figcaption>{_html_text(b.items[0])}</figcaption></figure>"
            )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body><main>\n"
        + "\n".join(out)
        + "\n</main></body>\n</html>\n"
    )
