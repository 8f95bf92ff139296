"""One static HTML page for a directory of reproductions: `rlntp report DIR`.

A section is a directory holding `report.json` (written by `experiments.reproduce`) or, for recipes
that predate it, `recipe.json`. Each shows its command, preset and wall time, the paper's numbers
beside ours, the summary table, every figure, and the configs. Images are referenced by paths
relative to the page, so the directory can be copied or served as it is; no script, no network.
"""

import html
import json
import os
import time
from pathlib import Path
from urllib.parse import quote

from rlntp.errors import check
from rlntp.files import atomic_write_text

ORDER = ("fig1", "fig2", "fig3", "arch", "rare", "small-d", "partial-cot", "fig13", "star-odds", "theory", "mult")
"""Sections in the paper's order; any other follows alphabetically."""
SKIP = {"runs", "data"}
"""Directories never searched for sections or figures: a recipe's own runs and datasets."""
MAX_DEPTH = 3

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1500px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-top: 2px solid #ccc; padding-top: 0.8em; margin-top: 2em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; line-height: 1.35; }
code { background: #f0f0f0; padding: 0.1em 0.3em; }
table.paper { border-collapse: collapse; margin: 0.8em 0; font-size: 14px; }
table.paper th, table.paper td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
table.paper th { background: #eee; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #666; }
.meta { color: #555; font-size: 14px; }
"""


def find_sections(root: Path) -> list[Path]:
    """Directories under `root` (itself included, at most MAX_DEPTH below) holding report.json or recipe.json."""
    found = []

    def visit(directory: Path, depth: int) -> None:
        if (directory / "report.json").exists() or (directory / "recipe.json").exists():
            found.append(directory)
        if depth < MAX_DEPTH:
            for child in sorted(p for p in directory.iterdir() if p.is_dir() and p.name not in SKIP):
                visit(child, depth + 1)

    visit(root, 0)

    def order(section: Path) -> tuple:
        name = _read(section)["recipe"]
        return (ORDER.index(name) if name in ORDER else len(ORDER), name, str(section))

    return sorted(found, key=order)


def _read(section: Path) -> dict:
    """The section's report.json, or what recipe.json tells of it."""
    if (section / "report.json").exists():
        record = json.loads((section / "report.json").read_text())
    else:
        legacy = json.loads((section / "recipe.json").read_text())
        record = {"recipe": legacy.get("recipe", section.name), "config": legacy.get("preset")}
    record.setdefault("recipe", section.name)
    return record


def _figures(section: Path, sections: set[Path]) -> list[Path]:
    """PNGs of a section: its own and those of its subdirectories (not runs/, data/ or a nested section)."""
    figures = []

    def visit(directory: Path, depth: int) -> None:
        figures.extend(sorted(directory.glob("*.png")))
        if depth < 2:
            for child in sorted(p for p in directory.iterdir() if p.is_dir()):
                if child.name not in SKIP and child not in sections:
                    visit(child, depth + 1)

    visit(section, 0)
    return figures


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "not recorded"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _status(section: Path) -> str:
    """'12 done, 1 failed' from the sweep's status.json, or ''."""
    path = section / "status.json"
    if not path.exists():
        return ""
    states: dict[str, int] = {}
    for run in json.loads(path.read_text()).get("runs", {}).values():
        states[run.get("state", "?")] = states.get(run.get("state", "?"), 0) + 1
    return ", ".join(f"{n} {state}" for state, n in sorted(states.items()))


def _section_html(section: Path, page_dir: Path, sections: set[Path]) -> str:
    record = _read(section)
    name = record["recipe"]
    e = html.escape
    parts = [f'<h2 id="{e(name)}">{e(record.get("title") or name)}</h2>']
    meta = [f"directory <code>{e(os.path.relpath(section, page_dir))}</code>"]
    if record.get("preset"):
        meta.append(f"preset <code>{e(str(record['preset']))}</code>")
    meta.append(f"wall time {_duration(record.get('seconds'))}")
    if _status(section):
        meta.append(f"runs: {e(_status(section))}")
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if record.get("command"):
        parts.append(f"<p>Made by <code>{e(record['command'])}</code></p>")
    if record.get("paper"):
        rows = "".join(f"<tr><td>{e(r.get('quantity', ''))}</td><td>{e(r.get('paper', ''))}</td>"
                       f"<td>{e(r.get('ours', ''))}</td></tr>" for r in record["paper"])
        parts.append(f'<table class="paper"><tr><th>quantity</th><th>the paper</th><th>ours</th></tr>{rows}</table>')
    if (section / "summary.txt").exists():
        parts.append(f"<pre>{e((section / 'summary.txt').read_text())}</pre>")
    for figure in _figures(section, sections):
        source = quote(Path(os.path.relpath(figure, page_dir)).as_posix())
        parts.append(f'<figure><img src="{source}" alt="{e(figure.name)}">'
                     f"<figcaption>{e(os.path.relpath(figure, page_dir))}</figcaption></figure>")
    if record.get("notes"):
        parts.append(f"<p>{e(record['notes'])}</p>")
    for label, config in (("sweep.json", (section / "sweep.json").read_text() if (section / "sweep.json").exists()
                           else None), ("config", json.dumps(record["config"], indent=2) if record.get("config") else None)):
        if config:
            parts.append(f"<details><summary>{label}</summary><pre>{e(config)}</pre></details>")
    return "\n".join(parts)


def write_report(root: Path, out: Path | None = None) -> Path:
    """Write one static HTML page of every section under `root` to `out` (default ROOT/report.html); its path."""
    root = Path(root)
    check(root.is_dir(), f"{root} is not a directory; pass the directory of one or more reproductions "
                         "(e.g. runs/all from `rlntp reproduce all`)")
    sections = find_sections(root)
    check(len(sections) > 0, f"{root} holds no reproduction (no report.json or recipe.json within {MAX_DEPTH} levels); "
                             "pass the --out directory of `rlntp reproduce`")
    out = Path(out) if out is not None else root / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    page_dir = out.parent.resolve()
    sections = [s.resolve() for s in sections]
    names = [_read(s) for s in sections]
    toc = "".join(f'<li><a href="#{html.escape(r["recipe"])}">{html.escape(r.get("title") or r["recipe"])}</a></li>'
                  for r in names)
    body = "\n".join(_section_html(s, page_dir, set(sections)) for s in sections)
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rlntp: reproductions</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>How RL after next-token prediction facilitates learning: "
            f"reproductions</h1>\n<p class=\"meta\">{html.escape(str(root))} · written "
            f"{time.strftime('%Y-%m-%d %H:%M')}</p>\n<ul>{toc}</ul>\n{body}\n</body></html>\n")
    atomic_write_text(out, page)
    return out
