"""The paper's figures as recipes: each is a sweep (one per preset) and a report drawn from its results table.

A recipe module defines
    PRESETS: dict[str, dict]   a sweep per preset (`rlntp.sweeps.spec`: the same form as a sweep file)
    report(table, spec, out)   draws the recipe's figures from the results table into `out`, returns
                               its summary table as text
and `reproduce` runs it: the sweep into `out`, then the report. A new recipe is one new module.
"""

import importlib
import json
from pathlib import Path

from rlntp.files import atomic_write_text


def reproduce(name: str, preset: str, out: Path, device: str, executor, progress: bool = True) -> str:
    """Run recipe `name` at `preset` in its own directory `out` and report it; its summary table as text.

    Rerunning resumes (`runs.open_recipe_dir`, `sweeps.engine.run_sweep`). The sweep is also written to
    OUT/sweep.json, which `rlntp sweep` takes as a starting point for a variation.
    """
    import pandas as pd

    from rlntp import runs
    from rlntp.errors import check
    from rlntp.sweeps.engine import RESULTS, run_sweep
    from rlntp.sweeps.executors import check_executor
    from rlntp.sweeps.spec import expand

    recipe = importlib.import_module(f"rlntp.experiments.{name}")
    check(preset in recipe.PRESETS, f"unknown preset {preset!r}; choose one of: {', '.join(recipe.PRESETS)}")
    spec = recipe.PRESETS[preset]
    jobs = expand(spec, device, where=f"the {name} recipe's {preset} preset")
    check_executor(executor)
    out = Path(out)
    with runs.open_recipe_dir(out, name, spec):
        atomic_write_text(out / runs.SWEEP, json.dumps(spec, indent=2) + "\n")
        run_sweep(jobs, out, executor, progress)
        summary = recipe.report(pd.read_parquet(out / RESULTS), spec, out)
        atomic_write_text(out / "summary.txt", summary + "\n")
    return summary
