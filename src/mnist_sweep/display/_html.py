"""Pieces of the self-contained HTML pages the reports write: one style sheet, inlined figures."""

from __future__ import annotations

import base64
import html
from pathlib import Path

PAGE_CSS = """
:root { --ink: #1f2933; --muted: #616e7c; --line: #e4e7eb; --accent: #2563eb; --bg: #f7f8fa; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--ink);
  font: 15px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 28px 24px 60px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header .meta { color: var(--muted); font-size: 13px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 10px; padding: 18px 22px;
  margin: 18px 0; box-shadow: 0 1px 2px rgba(0,0,0,.03); }
h2 { font-size: 18px; margin: 0 0 12px; }
.question { font-size: 17px; font-style: italic; color: var(--muted); margin: 0 0 10px; }
.answer { font-size: 16px; margin: 0 0 6px; font-weight: 600; }
ul.findings { margin: 0; padding-left: 20px; }
ul.findings li { margin: 4px 0; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(460px, 1fr)); gap: 18px; }
figure { margin: 0; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; }
figcaption { color: var(--muted); font-size: 13px; margin-top: 6px; }
.kv { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
.kv dt { color: var(--muted); }
.kv dd { margin: 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; font-variant-numeric: tabular-nums; }
th, td { padding: 6px 10px; border-bottom: 1px solid var(--line); text-align: left; white-space: nowrap; }
th { background: #f0f2f5; position: sticky; top: 0; font-weight: 600; }
td.num { text-align: right; }
tbody tr:nth-child(even) { background: #fafbfc; }
tr.best { background: #ecfdf3 !important; font-weight: 600; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; font-weight: 600; }
.state-COMPLETE { background: #dcfce7; color: #166534; }
.state-PRUNED { background: #fef9c3; color: #854d0e; }
.state-FAIL { background: #fee2e2; color: #991b1b; }
.state-RUNNING, .state-WAITING { background: #e0e7ff; color: #3730a3; }
.state-PAUSED, .state-PROMOTED { background: #f3e8ff; color: #6b21a8; }
code { font: 12px ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.note { color: var(--muted); font-size: 13px; white-space: normal; }
ul.notes { margin: 0; padding-left: 20px; color: var(--muted); }
footer { color: var(--muted); font-size: 12px; margin-top: 24px; }
"""
"""The style sheet every report page shares."""


def figure_html(path: Path, title: str, caption: str) -> str:
    """``path`` (a PNG) inlined as a titled, captioned ``<figure>``."""
    e = html.escape
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure id="fig-{e(path.stem)}"><h3 style="font-size:15px;margin:0 0 8px">{e(title)}</h3>'
        f'<img src="data:image/png;base64,{data}" alt="{e(title)}" data-file="{e(path.name)}">'
        f"<figcaption>{e(caption)}</figcaption></figure>"
    )
