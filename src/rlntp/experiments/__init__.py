"""The paper's figures as recipes: each is a sweep (one per preset) and a report drawn from its results table.

A recipe module defines
    PRESETS: dict[str, dict]   a sweep per preset (`rlntp.sweeps.spec`: the same form as a sweep file)
    report(table, spec, out)   draws the recipe's figures from the results table into `out`, returns
                               its summary table as text
and may define
    paper(table)               rows (quantity, the paper's number, ours) for the report page
and `reproduce` runs it: the sweep into `out`, then the report. A new recipe is one new module.
"""

import importlib
import json
import time
from pathlib import Path

from rlntp.files import atomic_write_text

REPORT = "report.json"
"""What `rlntp report` shows of a recipe directory beside its figures: title, command, time, the paper's numbers."""

PARITY_RECIPES = ("fig1", "fig2", "fig3", "arch", "rare", "small-d", "partial-cot", "fig13", "star-odds")
"""The recipes `rlntp reproduce all` runs, in this order (multiplication has its own command)."""

THEORY = {"cpu": {}, "paper": {}}
"""Per preset of `reproduce all`: the arguments of the theory's figures (`rlntp theory figure`; its defaults)."""


def recipe_module(name: str):
    """The module of recipe `name` (`star-odds` -> rlntp.experiments.star_odds)."""
    return importlib.import_module(f"rlntp.experiments.{name.replace('-', '_')}")


def reproduce(name: str, preset: str, out: Path, device: str, executor, progress: bool = True) -> str:
    """Run recipe `name` at `preset` in its own directory `out` and report it; its summary table as text.

    Rerunning resumes (`runs.open_recipe_dir`, `sweeps.engine.run_sweep`). The sweep is also written to
    OUT/sweep.json, which `rlntp sweep` takes as a starting point for a variation; OUT/report.json holds
    the command, the wall time of every call on this directory added up, and the paper's numbers.
    """
    import pandas as pd

    from rlntp import runs
    from rlntp.errors import check_choice
    from rlntp.sweeps.engine import RESULTS, run_sweep
    from rlntp.sweeps.executors import check_executor
    from rlntp.sweeps.spec import expand

    started = time.perf_counter()
    recipe = recipe_module(name)
    check_choice("preset", preset, recipe.PRESETS)
    spec = recipe.PRESETS[preset]
    jobs = expand(spec, device, where=f"the {name} recipe's {preset} preset")
    check_executor(executor)
    out = Path(out)
    with runs.open_recipe_dir(out, name, spec):
        atomic_write_text(out / runs.SWEEP, json.dumps(spec, indent=2) + "\n")
        run_sweep(jobs, out, executor, progress)
        table = pd.read_parquet(out / RESULTS)
        summary = recipe.report(table, spec, out)
        atomic_write_text(out / "summary.txt", summary + "\n")
        write_report_json(out, name, recipe.__doc__.strip().splitlines()[0], preset,
                          f"rlntp reproduce {name} --preset {preset} --out {out}", time.perf_counter() - started,
                          recipe.paper(table) if hasattr(recipe, "paper") else [])
    return summary


def write_report_json(out: Path, recipe: str, title: str, preset: str, command: str, seconds: float,
                      paper: list[tuple[str, str, str]]) -> None:
    """OUT/report.json; `seconds` adds to the time recorded by earlier calls on the same directory."""
    path = Path(out) / REPORT
    earlier = (json.loads(path.read_text()).get("seconds") or 0.0) if path.exists() else 0.0
    record = {"recipe": recipe, "title": title, "preset": preset, "command": command, "seconds": earlier + seconds,
              "paper": [{"quantity": q, "paper": p, "ours": o} for q, p, o in paper]}
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def reproduce_all(preset: str, out: Path, device: str, executor, progress: bool = True) -> str:
    """Every parity recipe into OUT/NAME, the theory's figures into OUT/theory, and OUT/report.html.

    Each recipe resumes like its own command, so a rerun after a kill continues where it stopped.
    Returns one line per recipe with its summary's path and wall time.
    """
    from rlntp.report import write_report
    from rlntp.theory.cli import figure

    out = Path(out)
    lines = []
    for name in PARITY_RECIPES:
        started = time.perf_counter()
        reproduce(name, preset, out / name, device, executor, progress)
        lines.append(f"{name:>12s}: {out / name / 'summary.txt'} ({time.perf_counter() - started:,.0f} s)")
    theory = out / "theory"
    if not (theory / REPORT).exists():
        started = time.perf_counter()
        figure(theory, **THEORY[preset])
        write_report_json(theory, "theory", "The linear autoregressive model: Theorem 1 (pre-training) and Theorem 2 "
                          "(STaR), simulation over closed form", preset, f"rlntp theory figure --out {theory}",
                          time.perf_counter() - started, [])
        lines.append(f"{'theory':>12s}: {theory} ({time.perf_counter() - started:,.0f} s)")
    lines.append(f"report: {write_report(out)}")
    return "\n".join(lines)
