"""One static HTML page for a directory of reproductions: `rlntp report DIR`.

A section is a directory holding `report.json` (written by `experiments.reproduce`). The page opens
with one table of every section's claims (the paper's statement, the criterion, the verdict computed
from the results with the regime of the runs it was judged on beneath it (`rlntp.regime`), the evidence:
`experiments.claims`); then each section shows its command, preset and
wall time, its claims, the summary table, every figure, and the settings. Sections follow the recipes'
order (its place in `experiments.RECIPES`, recorded in each report.json as "order"); a file that cannot be
read becomes a note in its section, never an error. Images are referenced by paths relative to the page, so the
directory can be copied or served as it is; no script, no network. `claims_markdown` gives the claims
table as Markdown (the README's results).
"""

import html
import json
import os
import time
from collections import Counter
from pathlib import Path
from urllib.parse import quote

from rlntp.errors import check
from rlntp.files import GENERATOR, check_output, write_output
from rlntp.regime import MEMORISATION, ratio
from rlntp.registration import report_kind, scope, seeds

VERDICT_STYLES = {"reproduced": "reproduced", "partly": "partly", "not reproduced": "not-reproduced",
                  "not evaluated": "not-evaluated"}
"""The CSS class of each verdict's cell (`experiments.claims`): green, amber, red."""
SKIP = {"runs", "data"}
"""Directories never searched for sections or figures: a recipe's own runs and datasets."""
MAX_DEPTH = 3

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1500px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { border-top: 2px solid #ccc; padding-top: 0.8em; margin-top: 2em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 12px; line-height: 1.35; }
code { background: #f0f0f0; padding: 0.1em 0.3em; }
table.claims { border-collapse: collapse; margin: 0.8em 0; font-size: 14px; }
table.claims th, table.claims td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left;
  vertical-align: top; }
table.claims th { background: #eee; }
td.reproduced { background: #d8f0d8; } td.partly { background: #fbeccb; } td.not-reproduced { background: #f6d5d5; }
td.choice { font-style: italic; color: #8a5a00; }
td.not-evaluated { background: #e4e4e4; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 12px; color: #666; }
.meta { color: #555; font-size: 14px; }
pre.response { white-space: pre-wrap; max-width: 60em; max-height: 24em; overflow-y: auto; }
"""


def find_sections(root: Path) -> list[Path]:
    """Directories under `root` (itself included, at most MAX_DEPTH below) holding report.json, in the recipes' order."""
    found = []

    def visit(directory: Path, depth: int) -> None:
        if (directory / "report.json").is_file():
            found.append(directory)
        if depth < MAX_DEPTH:
            for child in sorted(p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()
                                and p.name not in SKIP):
                visit(child, depth + 1)

    visit(root, 0)

    def key(section: Path) -> tuple:
        record = _read(section)
        order = record.get("order")
        return (order if isinstance(order, (int, float)) else float("inf"), record["recipe"], str(section))

    return sorted(found, key=key)


def _read(section: Path) -> dict:
    """The section's report.json; a file that cannot be read becomes a note."""
    try:
        record = json.loads((section / "report.json").read_bytes())
        if not isinstance(record, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as error:  # one broken file should not hide the other sections
        return {"recipe": section.name, "notes": f"report.json could not be read: {error}"}
    record["recipe"] = str(record.get("recipe") or section.name)
    return record


def _text(path: Path) -> str | None:
    """A text file of a section, or None where it is missing; one that cannot be read says so."""
    if not path.is_file():
        return None
    try:
        return path.read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        return f"({path.name} could not be read: {error})"


def _figures(section: Path, sections: set[Path]) -> list[Path]:
    """PNGs of a section: its own and those of its subdirectories (not runs/, data/ or a nested section)."""
    figures = []

    def visit(directory: Path, depth: int) -> None:
        figures.extend(sorted(directory.glob("*.png")))
        if depth < 2:
            for child in sorted(p for p in directory.iterdir() if p.is_dir() and not p.is_symlink()):
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
    try:
        runs = json.loads((section / "status.json").read_bytes())["runs"]
        states = Counter(str(run.get("state", "?")) for run in runs.values() if isinstance(run, dict))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):  # missing, being rewritten, or not ours
        return ""
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
    text = _text(section / "sweep.json")
    if text is not None:
        try:
            text = json.dumps(json.loads(text), indent=2)
        except ValueError:
            pass  # shown as it is
        configs.append(("sweep.json", text))
    elif record.get("settings"):
        configs.append(("preset settings", json.dumps(record["settings"], indent=2)))
    return configs


def _escape(value) -> str:
    """`value` as HTML-escaped text ('' for None); report.json may hold numbers where text is expected."""
    return "" if value is None else html.escape(str(value))


def _claims(record: dict) -> list[dict]:
    """The section's claims as report.json holds them (`experiments.reproduce`); anything else is left out."""
    claims = record.get("claims")
    return [claim for claim in claims if isinstance(claim, dict)] if isinstance(claims, list) else []


_CLAIM_HEADER = "<th>the paper's claim</th><th>criterion</th><th>verdict</th><th>evidence</th>"


def _claim_cells(claim: dict) -> str:
    """A claim's cells: the claim, the criterion, the verdict (coloured by `VERDICT_STYLES`) with the regime of the
    runs it was judged on beneath it, and the evidence."""
    verdict = claim.get("verdict")
    style = VERDICT_STYLES.get(verdict) if isinstance(verdict, str) else None
    verdict_cell = f'<td class="{style}">' if style else "<td>"
    found = regime_of(claim)
    beneath = "" if found is None else (f'<br><span class="meta" title="{_escape(found[1])}">{_escape(found[0])}'
                                        "</span>")
    return (f"<td>{_escape(claim.get('claim'))}</td><td>{_escape(claim.get('criterion'))}</td>"
            f"{verdict_cell}{_escape(verdict)}{beneath}</td><td>{_escape(claim.get('evidence'))}</td>")


def regime_of(claim: dict) -> tuple[str, str] | None:
    """The regime of the runs a claim was judged on, as report.json records it (`experiments.claims.regime`): the
    ratio in a few words (`rlntp.regime.ratio`) and in full; None where it records none (a recipe with a plan of
    its own, a report.json written before claims recorded it) or it cannot be read."""
    found = claim.get("regime")
    if not isinstance(found, dict):
        return None
    passes = found.get("passes")
    if not (passes is None or _is_number(passes)):
        return None
    return ratio(passes), str(found.get("text") or ratio(passes))


def _all_claims_html(records: list[dict], anchors: list[str]) -> str:
    """One table of every section's claims, each row's recipe linked to its section; '' where none has claims."""
    rows = [f'<tr><td><a href="#{_escape(anchor)}">{_escape(record["recipe"])}</a></td>{_claim_cells(claim)}</tr>'
            for record, anchor in zip(records, anchors, strict=True) for claim in _claims(record)]
    if not rows:
        return ""
    counts = Counter(str(claim.get("verdict")) for record in records for claim in _claims(record))
    tally = ", ".join(f"{counts[verdict]} {verdict}" for verdict in VERDICT_STYLES if counts[verdict])
    return (f"<h2>The paper's claims</h2>\n<p class=\"meta\">{len(rows)} claims: {_escape(tally)}. Each verdict is "
            "computed from the recipe's results by the criterion beside it.</p>\n"
            f'<table class="claims"><tr><th>recipe</th>{_CLAIM_HEADER}</tr>{"".join(rows)}</table>')


def _section_html(section: Path, record: dict, anchor: str, root: Path, page_dir: Path, sections: set[Path]) -> str:
    """The section's HTML; paths are shown relative to `root` and linked relative to the page's directory."""
    parts = [f'<h2 id="{_escape(anchor)}">{_escape(record.get("title") or record["recipe"])}</h2>']
    meta = [f"directory <code>{_escape(os.path.relpath(section, root))}</code>"]
    if record.get("preset"):
        meta.append(f"preset <code>{_escape(record['preset'])}</code>")
    meta.append(_escape(evidence_of(record)))
    if (record.get("registration") or {}).get("hash"):
        meta.append(f"registration <code>{_escape(record['registration']['hash'])}</code>"
                    + ("" if scope(record) >= 2 else " (scope 1: the checks' helper code and the jobs' defaults not "
                                                      "covered)"))
    meta.append(f"wall time {_duration(record.get('seconds'))}")
    if _status(section):
        meta.append(f"runs: {_escape(_status(section))}")
    parts.append(f'<p class="meta">{" · ".join(meta)}</p>')
    if record.get("command"):
        parts.append(f"<p>Made by <code>{_escape(record['command'])}</code></p>")
    if _claims(record):
        rows = "".join(f"<tr>{_claim_cells(claim)}</tr>" for claim in _claims(record))
        parts.append(f'<table class="claims"><tr>{_CLAIM_HEADER}</tr>{rows}</table>')
    summary = _text(section / "summary.txt")
    if summary is not None:
        parts.append(f"<pre>{_escape(summary)}</pre>")
    for figure in _figures(section, sections):
        source = quote(Path(os.path.relpath(figure, page_dir)).as_posix())
        parts.append(f'<figure><img src="{source}" alt="{_escape(figure.name)}">'
                     f"<figcaption>{_escape(os.path.relpath(figure, root))}</figcaption></figure>")
    if record.get("notes"):
        parts.append(f"<p>{_escape(record['notes'])}</p>")
    for path in sorted(section.glob("examples*.json")):
        parts.append(_examples_html(path))
    provenance = _provenance_html(record)
    if provenance:
        parts.append(provenance)
    for label, config in _configs(section, record):
        parts.append(f"<details><summary>{_escape(label)}</summary><pre>{_escape(config)}</pre></details>")
    return "\n".join(parts)


def _examples_html(path: Path) -> str:
    """Sampled responses a recipe chose to show (SECTION/examples*.json: a heading, a note, the paper's statement on
    them, and items with a label, the paper's statement, the response, its length and whether it is right), each
    beside what the paper says; '' where there are none or the file cannot be read."""
    try:
        record = json.loads(path.read_text())
        items = [item for item in record.get("items", []) if isinstance(item, dict)]
    except (OSError, ValueError, AttributeError):
        return ""
    if not items:
        return ""
    rows = "".join(f"<tr><td>{_escape(item.get('label'))}<br><span class=\"meta\">{_escape(item.get('length'))} "
                   f"tokens, {'right' if item.get('correct') else 'wrong'}, reward {_escape(item.get('reward'))}"
                   f"</span></td><td>{_escape(item.get('paper'))}</td>"
                   f"<td><pre class=\"response\">{_escape(item.get('response'))}</pre></td></tr>" for item in items)
    question = items[0]
    head = (f"<h3>{_escape(record.get('heading'))}</h3><p>Test question {_escape(question.get('question'))}, gold "
            f"answer <code>{_escape(question.get('answer'))}</code>. {_escape(record.get('note') or '')}</p>")
    measure = f"<p>{_escape(record['measure'])}</p>" if record.get("measure") else ""
    return (f'{head}<table class="claims"><tr><th>when</th><th>the paper</th><th>the response</th></tr>{rows}'
            f"</table>{measure}")


def _provenance_html(record: dict) -> str:
    """The preset's settings, each the paper's (where it says so, and its words) or our choice (why), as report.json
    holds them (`experiments.provenance.as_rows`); '' where it holds none."""
    rows = record.get("provenance")
    rows = [row for row in rows if isinstance(row, dict)] if isinstance(rows, list) else []
    if not rows:
        return ""
    choices = sum(row.get("provenance") == "choice" for row in rows)
    cells = "".join(f'<tr><td><code>{_escape(row.get("setting"))}</code></td><td><code>'
                    f'{_escape(json.dumps(row.get("value")))}</code></td>'
                    f'<td class="{"choice" if row.get("provenance") == "choice" else "paper"}">'
                    f'{_escape(row.get("provenance"))}</td><td>{_escape(row.get("note"))}'
                    + (f' <q>{_escape(row["quote"])}</q>' if row.get("quote") else "") + "</td></tr>" for row in rows)
    return (f"<details><summary>settings: {len(rows) - choices} the paper's, {choices} our choices</summary>"
            f'<table class="claims"><tr><th>setting</th><th>value</th><th>from</th><th>where the paper states it, '
            f"or why we chose it</th></tr>{cells}</table></details>")


def write_report(root: Path, out: Path | None = None) -> Path:
    """Write one static HTML page of every section under `root` to `out` (default ROOT/report.html); its path."""
    root = Path(root)
    check(root.is_dir(), f"{root} is not a directory; pass the directory of one or more reproductions "
                         "(e.g. runs/all from `rlntp reproduce all`)")
    sections = find_sections(root)
    check(len(sections) > 0, f"{root} holds no reproduction (no report.json within {MAX_DEPTH} levels); "
                             "pass the --out directory of `rlntp reproduce`")
    out = check_output(Path(out) if out is not None else root / "report.html", suffix=".html")
    page_dir = out.parent.resolve()
    sections = [s.resolve() for s in sections]
    records = [_read(s) for s in sections]
    anchors = _anchors(records)
    toc = "".join(f'<li><a href="#{_escape(a)}">{_escape(r.get("title") or r["recipe"])}</a></li>'
                  for r, a in zip(records, anchors))
    claims = _all_claims_html(records, anchors)
    body = "\n".join(_section_html(s, r, a, root.resolve(), page_dir, set(sections))
                     for s, r, a in zip(sections, records, anchors))
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"generator\" "
            f"content=\"{GENERATOR} report\"><title>rlntp: reproductions</title>"
            f"<style>{_STYLE}</style></head><body>\n<h1>How RL after next-token prediction facilitates learning: "
            f"reproductions</h1>\n<p class=\"meta\">{_escape(root)} · written "
            f"{time.strftime('%Y-%m-%d %H:%M')}</p>\n{claims}\n<h2>Sections</h2>\n<ul>{toc}</ul>\n{body}\n"
            "</body></html>\n")
    return write_output(out, page.encode())


def evidence_of(record: dict) -> str:
    """What a report's verdicts rest on, in words: 'confirmation seeds 1000-1002' or 'exploration seeds 0-2'
    (`rlntp.registration`); a report written before registrations existed is exploration."""
    used = (record.get("registration") or {}).get("seeds") or seeds(record.get("settings") or {})
    shown = "" if not used else f" seed {used[0]}" if len(used) == 1 else (
        f" seeds {used[0]}-{used[-1]}" if used == list(range(used[0], used[-1] + 1)) else
        f" seeds {', '.join(map(str, used))}")
    return report_kind(record) + shown


def claims_markdown(root: Path, brief: bool = False, regime_only: bool = False) -> str:
    """Every claim of the reproductions under `root` as one Markdown table (recipe, the paper, criterion, verdict,
    evidence; `brief`: recipe, the paper, verdict; `regime_only`: only the recipes run in the paper's regime
    (`in_regime`), the others named in a line below the table), recipes in their order (`experiments.RECIPES`),
    each recipe's claims in its own order. Deterministic: the same report.json files give the same text (the
    README's results table and docs/results.md are made from it)."""
    root = Path(root)
    check(root.is_dir(), f"{root} is not a directory; pass the directory of one or more reproductions")
    sections = find_sections(root)
    check(len(sections) > 0, f"{root} holds no reproduction (no report.json within {MAX_DEPTH} levels)")
    keys = ("claim", "verdict") if brief else ("claim", "criterion", "verdict", "evidence")
    header = ["recipe", "the paper", *(["verdict"] if brief else ["criterion", "verdict", "evidence"])]
    records = [_read(section) for section in sections]
    left_out = [record for record in records if regime_only and not in_regime(record)]
    records = [record for record in records if not any(record is out for out in left_out)]
    shown = any(regime_of(claim) is not None for record in records for claim in _claims(record))
    header += ["pre-training regime"] if shown else []  # none in report.json written before claims recorded it
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for record in records:
        preset = f"{record['preset']}, " if isinstance(record.get("preset"), str) else ""
        recipe = f"{record['recipe']} ({preset}{evidence_of(record)})"
        for claim in _claims(record):
            cells = [recipe, *(claim.get(key) for key in keys)]
            cells += [(regime_of(claim) or ("", ""))[0 if brief else 1]] if shown else []
            lines.append("| " + " | ".join(_markdown_cell(cell) for cell in cells) + " |")
    if left_out:
        names = ", ".join(_markdown_cell(record["recipe"]) for record in left_out)
        lines.append(f"\nNot in this table, run where pre-training saw its inputs more than once (the memorisation "
                     f"regime, or small d by the paper's design) or where their number is unknown: {names}.")
    return "\n".join(lines) + "\n"


RESULT_FILES = ("results.parquet", "theory.json", "results.json")
"""What a reproduction keeps for its claims to recompute from: a sweep's table, the theory's measurements, the LLM
path's rows and completion analysis (`experiments.llm_math`)."""


def kept_results(section: Path):
    """The results a published reproduction's claims were judged on (the first of `RESULT_FILES` in `section`), as
    the checks read them; None where it keeps none."""
    for name in RESULT_FILES:
        path = Path(section) / name
        if path.exists():
            if path.suffix == ".parquet":
                import pandas as pd

                return pd.read_parquet(path)
            return json.loads(path.read_text())
    return None


def in_regime(record: dict) -> bool:
    """Whether a report's runs are in the paper's regime: every claim records a regime (`experiments.claims.regime`)
    whose pre-training saw no more samples than there are distinct inputs (`regime.MEMORISATION`), or none records
    one (results that are no sweep's table: the theory, the LLM path, without pre-training on a task). A regime with
    distinct inputs unknown, or one that cannot be read, is not the paper's."""
    found = [claim.get("regime") for claim in _claims(record)]
    if all(regime is None for regime in found):
        return True
    return all(isinstance(regime, dict) and _is_number(regime.get("passes")) and regime["passes"] <= MEMORISATION
               for regime in found)


def _is_number(value) -> bool:
    """Whether a report.json value is a number (an int or a float, not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_MARKDOWN_ESCAPES = str.maketrans({"\\": "\\\\", "|": "\\|", "[": "\\[", "]": "\\]", "&": "&amp;", "<": "&lt;"})
"""What report.json text could inject into a Markdown table: a cell's end (|), a link or image ([...](...)), raw HTML
or an entity (< and &); each becomes the character itself."""


def _markdown_cell(value) -> str:
    """`value` as the text of one Markdown table cell: on one line, nothing in it read as a link, HTML or a cell's
    end (`_MARKDOWN_ESCAPES`)."""
    text = "" if value is None else " ".join(str(value).split())
    return text.translate(_MARKDOWN_ESCAPES)
