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
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from rlntp.errors import check
from rlntp.files import atomic_write_text

ORDER = ("fig1", "fig2", "fig3", "arch", "rare", "small-d", "partial-cot", "fig13", "star-odds", "theory", "mult",
         "gsm8k", "math")
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
    """The section's report.json, or what recipe.json tells of it; a file that cannot be read becomes a note."""
    name = "report.json" if (section / "report.json").exists() else "recipe.json"
    try:
        record = json.loads((section / name).read_text())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:  # one broken file should not hide the other sections
        return {"recipe": section.name, "notes": f"{name} could not be read: {error}"}
    if name == "recipe.json":
        record = {"recipe": record.get("recipe"), "config": record.get("preset")}
    record["recipe"] = str(record.get("recipe") or section.name)
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
    if not isinstance(seconds, (int, float)):
        return "not recorded"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


def _status(section: Path) -> str:
    """'12 done, 1 failed' from the sweep's status.json, or ''."""
    path = section / "status.json"
    if not path.exists():
        return ""
    try:
        runs = json.loads(path.read_text()).get("runs", {})
    except (OSError, ValueError, AttributeError):  # being rewritten, or not the engine's file
        return ""
    states = Counter(str(run.get("state", "?")) for run in runs.values() if isinstance(run, dict))
    return ", ".join(f"{n} {state}" for state, n in sorted(states.items()))


def _anchors(records: list[dict]) -> list[str]:
    """One id per section: the recipe's name, numbered from the second time it appears (fig1, fig1-2)."""
    anchors, seen = [], {}
    for record in records:
        name = record["recipe"]
        seen[name] = seen.get(name, 0) + 1
        anchors.append(name if seen[name] == 1 else f"{name}-{seen[name]}")
    return anchors


def _configs(section: Path, record: dict) -> list[tuple[str, str]]:
    """(label, pretty-printed JSON) of the section's sweep.json and its recipe's preset settings."""
    configs = []
    if (section / "sweep.json").exists():
        text = (section / "sweep.json").read_text()
        try:
            text = json.dumps(json.loads(text), indent=2)
        except ValueError:
            pass  # shown as it is
        configs.append(("sweep.json", text))
    if record.get("config"):
        configs.append(("preset settings (recipe.json)", json.dumps(record["config"], indent=2)))
    return configs


def _escape(value) -> str:
    """`value` as HTML-escaped text ('' for None); report.json may hold numbers where text is expected."""
    return "" if value is None else html.escape(str(value))


def _section_html(section: Path, record: dict, anchor: str, root: Path, page_dir: Path, sections: set[Path]) -> str:
    """The section's HTML; paths are shown relative to `root` and linked relative to the page's directory."""
    parts = [f'<h2 id="{_escape(anchor)}">{_escape(record.get("title") or record["recipe"])}</h2>']
    meta = [f"directory <code>{_escape(os.path.relpath(section, root))}</code>"]
    if record.get("preset"):
        meta.append(f"preset <code>{_escape(record['preset'])}</code>")
    meta.append(f"wall time {_duration(record.get('seconds'))}")
    if _status(section):
        meta.append(f"runs: {_escape(_status(section))}")
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if record.get("command"):
        parts.append(f"<p>Made by <code>{_escape(record['command'])}</code></p>")
    if record.get("paper") and isinstance(record["paper"], list):
        rows = "".join(f"<tr><td>{_escape(r.get('quantity', ''))}</td><td>{_escape(r.get('paper', ''))}</td>"
                       f"<td>{_escape(r.get('ours', ''))}</td></tr>" for r in record["paper"] if isinstance(r, dict))
        parts.append(f'<table class="paper"><tr><th>quantity</th><th>the paper</th><th>ours</th></tr>{rows}</table>')
    if (section / "summary.txt").exists():
        parts.append(f"<pre>{_escape((section / 'summary.txt').read_text())}</pre>")
    for figure in _figures(section, sections):
        source = quote(Path(os.path.relpath(figure, page_dir)).as_posix())
        parts.append(f'<figure><img src="{source}" alt="{_escape(figure.name)}">'
                     f"<figcaption>{_escape(os.path.relpath(figure, root))}</figcaption></figure>")
    if record.get("notes"):
        parts.append(f"<p>{_escape(record['notes'])}</p>")
    for label, config in _configs(section, record):
        parts.append(f"<details><summary>{_escape(label)}</summary><pre>{_escape(config)}</pre></details>")
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
    records = [_read(s) for s in sections]
    anchors = _anchors(records)
    toc = "".join(f'<li><a href="#{_escape(a)}">{_escape(r.get("title") or r["recipe"])}</a></li>'
                  for r, a in zip(records, anchors))
    body = "\n".join(_section_html(s, r, a, root.resolve(), page_dir, set(sections))
                     for s, r, a in zip(sections, records, anchors))
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>rlntp: reproductions</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>How RL after next-token prediction facilitates learning: "
            f"reproductions</h1>\n<p class=\"meta\">{_escape(root)} · written "
            f"{time.strftime('%Y-%m-%d %H:%M')}</p>\n<ul>{toc}</ul>\n{body}\n</body></html>\n")
    atomic_write_text(out, page)
    return out
