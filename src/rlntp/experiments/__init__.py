"""The paper's figures as recipes. A recipe is one module of this package that declares

    RECIPE = Recipe(name, title, order, presets)   its command (`rlntp reproduce NAME`), the help of each preset,
                                                   and its place on the report page
    PRESETS: dict[str, ...]                        the settings of each preset

and how it runs, in one of two ways:

  - a sweep (most recipes): each preset is a sweep (the form of a sweep file, `rlntp.sweeps.spec`), and
        report(table, spec, out) -> str      draws the figures from the results table into `out`, returns
                                             the summary table as text
        prepare(preset, spec, out, progress) (optional)  makes what the sweep reads (datasets) before it
                                             runs; a relative `task.data` in the spec is relative to `out`
  - its own plan (the theory, the LLM path): jobs of the same engine (`sweeps.engine.run_jobs`)
        run(preset, out, device, progress[, executor]) -> (summary, results)
        recipe_jobs(preset, out) in the module of `run`: its jobs (`rlntp reproduce NAME --status`)
        INPUTS, with_inputs(preset, inputs) (optional)  a config dataclass of options the command line adds
                                             (the LLM recipes' --source, --test-source, --data), and the preset
                                             they make
        check_inputs(preset, inputs) (optional)  fails before the recipe's directory is claimed (a missing
                                             file, one too large, too few usable records, a hub that does not
                                             answer); `inputs` as given (None: none)

where each preset value comes from:

    PROVENANCE: dict[str, dict[str, Source]]       per preset, each value the paper's (where it says so) or our
                                                   choice (why) (`experiments.provenance`); `rlntp reproduce
                                                   NAME --plan` shows them, and a test holds every preset to it

and what of the paper it tests:

    CLAIMS: list[Claim]                            the paper's statements, each with a criterion in words and
                                                   a check of the results (the sweep's results table, or
                                                   the `results` its plan returns) giving a verdict
                                                   (`experiments.claims`)

`reproduce` is the one engine for both: it claims the recipe's directory (report.json, its marker,
with the lock), runs the recipe, evaluates its claims, and writes summary.txt and report.json. The
registry is this package's modules: a new recipe is one new module, found by the CLI (`rlntp reproduce
NAME`), `reproduce all` and the report page.
"""

import importlib
import json
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rlntp.errors import check_choice
from rlntp.files import atomic_write_text

REPORT, SUMMARY = "report.json", "summary.txt"


@dataclass(frozen=True)
class Recipe:
    """What the CLI, `reproduce all` and the report need to know of a recipe, declared in its module."""

    name: str
    """the command: rlntp reproduce NAME (and the default directory runs/NAME)"""
    title: str
    """one line: the command's help and the heading of its report section"""
    order: float
    """its place on the report page and in `reproduce all`: the parity figures by figure number, then the
    theory (20s), multiplication (30s) and the LLM path (40s)"""
    presets: dict[str, str]
    """each preset's one-line description; the first is the default"""
    in_all: bool = True
    """run by `rlntp reproduce all`"""


def recipes() -> dict[str, Any]:
    """Every recipe module of this package, by name, in the report's order."""
    found = []
    for info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{info.name}")
        if isinstance(getattr(module, "RECIPE", None), Recipe):
            found.append(module)
    found.sort(key=lambda m: (m.RECIPE.order, m.RECIPE.name))
    return {module.RECIPE.name: module for module in found}


def is_sweep(module) -> bool:
    """Whether a recipe runs as a sweep (else it has a plan of its own, `run`)."""
    return not hasattr(module, "run")


def reproduce(name: str, preset: str, out: Path, device: str = "auto", executor=None, progress: bool = True,
              inputs: Any = None) -> str:
    """Run recipe `name` at `preset` in its own directory `out` and report it; its summary table as text.

    Rerunning resumes (the recipe's own directory, `runs.dirs.open_recipe_dir`). A sweep recipe also
    writes OUT/sweep.json, which `rlntp sweep` takes as a starting point for a variation; OUT/report.json
    holds the command, the wall time of every call on this directory added up, each of the recipe's claims
    with its verdict and evidence, computed from the results (`experiments.claims`), and every setting of the
    preset with its provenance (`experiments.provenance`). `inputs` (a recipe's INPUTS) replace what the preset
    reads; the settings they change are marked as given on the command line.
    """
    from rlntp.experiments.claims import evaluate
    from rlntp.runs.dirs import open_recipe_dir
    from rlntp.sweeps.executors import ExecutorConfig, check_executor

    started = time.perf_counter()
    module = recipes()[name]
    claims = module.CLAIMS  # every recipe declares them: a module without fails here, before any work
    check_choice("preset", preset, module.PRESETS)
    out = Path(out)
    settings, given = _settings(module, preset, inputs)
    if is_sweep(module):
        from rlntp.sweeps.spec import expand

        executor = executor or ExecutorConfig()
        jobs = expand(settings, device, where=f"the {name} recipe's {preset} preset", base=out.resolve())
        check_executor(executor, jobs)
    elif getattr(module, "secondary_process", lambda: False)():  # under `accelerate launch`: the main one claims
        return module.run(settings, out, device, progress)[0]
    else:
        getattr(module, "check_inputs", lambda *_: None)(settings, inputs)  # before the directory is claimed
    options = "".join(f" --{key.replace('_', '-')} {value}" for key, value in given.items())
    marker = {"recipe": name, "preset": preset, "settings": _jsonable(settings), "title": module.RECIPE.title,
              "order": module.RECIPE.order, "command": f"rlntp reproduce {name} --preset {preset}{options} --out {out}",
              "seconds": 0.0, "claims": []}
    with open_recipe_dir(out, marker) as record:
        if is_sweep(module):
            summary, results = _run_sweep(module, settings, jobs, out, executor, progress, preset)
        else:  # one at a time here unless executor flags were given
            summary, results = module.run(settings, out, device, progress,
                                          **({} if executor is None else {"executor": executor}))
        atomic_write_text(out / SUMMARY, summary + "\n")
        seconds = (record.get("seconds") or 0.0) + time.perf_counter() - started
        record.pop("paper", None)  # the hand-written rows of earlier versions, replaced by the claims
        record |= {"title": module.RECIPE.title, "order": module.RECIPE.order, "seconds": seconds,
                   "claims": evaluate(claims, results), "provenance": _provenance_rows(module, preset, given)}
        atomic_write_text(out / REPORT, json.dumps(record, indent=2) + "\n")
    return summary


def status(name: str, preset: str, out: Path, inputs: Any = None) -> str:
    """Each job of recipe `name` at `preset` and its state in its directory `out`, read-only
    (`sweeps.engine.status_report`): a sweep recipe's expanded runs, or the jobs of a recipe with a plan of its
    own (`recipe_jobs` of the module its `run` comes from: the LLM stages, the theory's simulations)."""
    from rlntp.errors import check
    from rlntp.runs.dirs import read_recipe_marker
    from rlntp.sweeps.engine import status_report

    module = recipes()[name]
    check_choice("preset", preset, module.PRESETS)
    out = Path(out)
    marker = read_recipe_marker(out)
    check(marker is None or marker["recipe"] == name, f"{out} is the directory of the {marker and marker['recipe']!r} "
          f"recipe; pass its own --out, or `rlntp reproduce {marker and marker['recipe']} --status --out {out}`")
    settings, _ = _settings(module, preset, inputs)
    if is_sweep(module):
        from rlntp.sweeps.spec import expand

        jobs = expand(settings, where=f"the {name} recipe's {preset} preset", base=out.resolve())
        return status_report(jobs, out)
    jobs = importlib.import_module(module.run.__module__).recipe_jobs(settings, out)
    return status_report(jobs, out, out)


def plan(name: str, preset: str, device: str = "auto", probe: bool = True, inputs: Any = None,
         executor=None) -> dict[str, Any]:
    """What `reproduce(name, preset)` would run, and at what cost, writing nothing: the sweep's plan
    (`sweeps.plan.plan_jobs`) or the recipe's own (`plan(preset)` of a recipe with a plan of its own), and every
    setting of the preset with its provenance (`experiments.provenance`)."""
    module = recipes()[name]
    check_choice("preset", preset, module.PRESETS)
    settings, given = _settings(module, preset, inputs)
    if is_sweep(module):
        from rlntp.sweeps.plan import plan_jobs
        from rlntp.sweeps.spec import expand

        jobs = expand(settings, device, where=f"the {name} recipe's {preset} preset",
                      base=Path(f"runs/{name}").resolve())
        planned = plan_jobs(jobs, device, probe, executor)
    else:
        planned = module.plan(settings)
    return {"recipe": name, "preset": preset, "title": module.RECIPE.title} | planned | {
        "settings": _provenance_rows(module, preset, given)}


def render_plan(planned: dict[str, Any]) -> str:
    """A recipe's plan as text: the counts and cost (`sweeps.plan.render`, or the recipe's own lines), then every
    setting with its provenance."""
    from rlntp.experiments.provenance import Source, table
    from rlntp.sweeps.plan import render

    title = f"rlntp reproduce {planned['recipe']} --preset {planned['preset']}: {planned['title']}"
    head = render(planned, title) if "kinds" in planned else "\n".join([title, *planned["lines"]])
    rows = {row["setting"]: (row["value"], Source(row["provenance"], row["note"])) for row in planned["settings"]}
    if not rows:
        return f"{head}\n\nsettings: no provenance declared for this preset"
    choices = sum(row["provenance"] == "choice" for row in planned["settings"])
    return (f"{head}\n\nsettings ({len(rows)}: {len(rows) - choices} the paper's, {choices} our choices):\n"
            + table(rows))


def _settings(module, preset: str, inputs: Any) -> tuple[Any, dict[str, Any]]:
    """The settings of `preset` with the recipe's `inputs` applied (`with_inputs`), and the values given that way."""
    import dataclasses

    settings = module.PRESETS[preset]
    if inputs is None:
        return settings, {}
    given = {k: v for k, v in dataclasses.asdict(inputs).items() if v is not None}
    return module.with_inputs(settings, inputs), given


def _provenance_rows(module, preset: str, given: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The preset's settings with their provenance (`experiments.provenance.as_rows`), those `given` on the command
    line marked so; none for a preset the recipe declares none for (one a test adds)."""
    from rlntp.experiments.provenance import as_rows, preset_sources

    if preset not in getattr(module, "PROVENANCE", {}):
        return []
    rows = as_rows(preset_sources(module, preset))
    for row in rows:
        if row["setting"] in (given or {}):
            row |= {"value": given[row["setting"]], "provenance": "choice",
                    "note": f"--{row['setting'].replace('_', '-')} on the command line"}
    return rows


def _run_sweep(module, spec: dict, jobs: list, out: Path, executor, progress: bool, preset: str):
    import pandas as pd

    from rlntp.sweeps.engine import RESULTS, run_sweep

    if hasattr(module, "prepare"):
        module.prepare(preset, spec, out, progress)
    run_sweep(jobs, out, executor, spec, f"recipe {module.RECIPE.name}, preset {preset}", progress)
    table = pd.read_parquet(out / RESULTS)
    return module.report(table, spec, out), table


def _jsonable(settings: Any) -> Any:
    """A preset as JSON data (dataclasses as dictionaries, paths as strings)."""
    import dataclasses

    if dataclasses.is_dataclass(settings):
        settings = dataclasses.asdict(settings)
    return json.loads(json.dumps(settings, default=str))


def recipes_of_all(preset: str) -> dict[str, Any]:
    """The recipes `reproduce all` runs (those marked `in_all`), by name; ConfigError unless each has `preset`."""
    from rlntp.errors import check

    chosen = {name: module for name, module in recipes().items() if module.RECIPE.in_all}
    for name, module in chosen.items():  # every preset must exist before the first recipe starts
        check(preset in module.PRESETS, f"recipe {name} has no preset {preset!r}; its presets: "
              + ", ".join(module.PRESETS))
    return chosen


def plan_all(preset: str, device: str = "auto", probe: bool = True) -> dict[str, Any]:
    """What `reproduce_all(preset)` would run: the plan of each of its recipes (`plan`), and their total cost where
    the recipes' plans give it in seconds; writes nothing."""
    plans = [plan(name, preset, device, probe) for name in recipes_of_all(preset)]
    timed = [p for p in plans if "seconds" in p.get("cost", {})]
    seconds = sum(p["cost"]["seconds"] for p in timed)
    return {"recipe": "all", "preset": preset, "title": f"every recipe of `rlntp reproduce all` ({len(plans)})",
            "recipes": plans,
            "cost": {"seconds": seconds, "hours": seconds / 3600, "of": [p["recipe"] for p in timed],
                     "others": {p["recipe"]: p.get("cost", {}).get("estimate", "not estimated")
                                for p in plans if p not in timed}}}


def render_plan_all(planned: dict[str, Any]) -> str:
    """`plan_all`'s plan as text: the total, then each recipe's plan (`render_plan`)."""
    cost = planned["cost"]
    devices = sorted({p["device"] for p in planned["recipes"] if "device" in p})
    head = [f"rlntp reproduce all --preset {planned['preset']}: {planned['title']}: "
            + ", ".join(p["recipe"] for p in planned["recipes"])]
    if cost["of"]:
        unit = "GPU" if all(device.startswith("cuda") for device in devices) else "CPU"
        head.append(f"cost: ≈ {cost['hours']:,.2f} {unit}-hours on {', '.join(devices)} for {', '.join(cost['of'])} "
                    "(one run at a time, from each recipe's timing probe)")
    head += [f"  {name}: {estimate}" for name, estimate in cost["others"].items()]
    return "\n\n".join(["\n".join(head), *(render_plan(p) for p in planned["recipes"])])


def reproduce_all(preset: str, out: Path, device: str = "auto", executor=None, progress: bool = True) -> str:
    """Every recipe marked `in_all` into OUT/NAME, then OUT/report.html.

    Each recipe resumes like its own command, so a rerun after a kill continues where it stopped.
    Returns one line per recipe with its summary's path and wall time.
    """
    from rlntp.report import write_report

    out = Path(out)
    lines = []
    for name in recipes_of_all(preset):
        started = time.perf_counter()
        reproduce(name, preset, out / name, device, executor, progress)
        lines.append(f"{name:>12s}: {out / name / SUMMARY} ({time.perf_counter() - started:,.0f} s)")
    lines.append(f"report: {write_report(out)}")
    return "\n".join(lines)
