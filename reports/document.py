"""A small document model rendered twice: Markdown (figures linked) and self-contained HTML (figures embedded, no network)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ssl_medbench.reports.tables import to_html, to_markdown

STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto; max-width: 1200px; color: #1b1b1b; }
h1, h2, h3 { color: #1f4e79; }
.scroll { overflow-x: auto; margin: 0.5em 0 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #c8d3de; padding: 0.25em 0.5em; text-align: right; white-space: nowrap; }
th { background: #eef3f8; }
td:nth-child(2), td:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #e2e8ee; margin: 0.5em 0; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.8em; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5em 1em; }
"""


@dataclass
class Document:
    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> None:
        self.blocks.append(("heading", (level, text)))

    def text(self, text: str, note: bool = False) -> None:
        self.blocks.append(("note" if note else "text", text))

    def table(self, table: pd.DataFrame, marks: pd.DataFrame | None = None) -> None:
        self.blocks.append(("table", (table, marks)))

    def image(self, path: Path, caption: str) -> None:
        self.blocks.append(("image", (path, caption)))

    def code(self, text: str, summary: str) -> None:
        self.blocks.append(("code", (text, summary)))

    def markdown(self, relative_to: Path) -> str:
        lines = [f"# {self.title}", ""]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                lines += ["#" * level + " " + text, ""]
            elif kind in ("text", "note"):
                lines += [("> " if kind == "note" else "") + str(value), ""]
            elif kind == "table":
                table, marks = value
                lines += [to_markdown(table, marks) if len(table) else "(no rows)", ""]
            elif kind == "image":
                path, caption = value
                lines += [f"![{caption}]({path.relative_to(relative_to).as_posix()})", ""]
            else:
                text, summary = value
                lines += [f"<details><summary>{summary}</summary>", "", "```yaml", text, "```", "", "</details>", ""]
        return "\n".join(lines)

    def html(self) -> str:
        parts = [
            f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(self.title)}</title>',
            f"<style>{STYLE}</style></head><body><h1>{html.escape(self.title)}</h1>",
        ]
        for kind, value in self.blocks:
            if kind == "heading":
                level, text = value
                parts.append(f"<h{level}>{html.escape(text)}</h{level}>")
            elif kind == "text":
                parts.append(f"<p>{html.escape(str(value))}</p>")
            elif kind == "note":
                parts.append(f'<p class="note">{html.escape(str(value))}</p>')
            elif kind == "table":
                table, marks = value
                parts.append(f'<div class="scroll">{to_html(table, marks)}</div>' if len(table) else "<p>(no rows)</p>")
            elif kind == "image":
                path, caption = value
                data = base64.b64encode(Path(path).read_bytes()).decode()
                parts.append(
                    f'<figure><img alt="{html.escape(caption)}" src="data:image/png;base64,{data}"><figcaption>{html.escape(caption)}</figcaption></figure>'
                )
            else:
                text, summary = value
                parts.append(
                    f"<details><summary>{html.escape(summary)}</summary><pre>{html.escape(text)}</pre></details>"
                )
        parts.append("</body></html>")
        return "\n".join(parts)
