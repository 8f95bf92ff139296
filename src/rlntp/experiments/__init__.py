"""The paper's figures as recipes: `RECIPES`, in the order of the report page and of `reproduce all`.

A recipe is one value, `Recipe` (`experiments.recipe`), declared as `RECIPE` in a module of its own: its command
(`rlntp reproduce NAME`), its presets (each value beside its source: the paper's or our choice,
`experiments.provenance`), the paper's claims it tests (`experiments.claims`), and how it runs (a sweep and its
report, or a plan of its own). A new recipe is one new module and its line in `RECIPES`; the CLI, `reproduce all`
and the report page read `RECIPES` when they run (a test may put a recipe of its own there).

`reproduce` is the one engine for all of them: it claims the recipe's directory (report.json, its marker, with
the lock), runs the recipe, evaluates its claims, and writes summary.txt and report.json.
A recipe with a plan of its own (the theory, the LLM path) runs as jobs of the same engine as the
sweeps (`sweeps.engine.run_jobs`, `OwnPlan.jobs`), so `--status` and the executors serve every recipe.
"""

import json
import time
from pathlib import Path
from typing import Any

from rlntp.errors import check_choice
from rlntp.experiments import arch, fig1, fig2, fig3, fig13, llm, mult, partial_cot, rare, small_d, star_odds, theory
from rlntp.experiments.recipe import REPORT, SUMMARY, Preset, Recipe
from rlntp.files import atomic_write_text
from rlntp.registration import FILE as REGISTRATION
from rlntp.registration import EXPLORATION, SCOPE, jsonable, registration, scope

__all__ = ["RECIPES", "REPORT", "SUMMARY", "Preset", "Recipe", "recipes", "reproduce", "plan", "regime",
           "reproduce_all"]

RECIPES: tuple[Recipe, ...] = (
    fig1.RECIPE, fig2.RECIPE, fig3.RECIPE, arch.RECIPE, rare.RECIPE, small_d.RECIPE, fig13.RECIPE, partial_cot.RECIPE,
    star_odds.RECIPE, theory.RECIPE, mult.RECIPE, llm.GSM8K, llm.MATH,
)
"""Every recipe, in the report page's order: the parity figures by figure number, then the theory, multiplication
and the LLM path."""


def recipes() -> dict[str, Recipe]:
    """Every recipe of `RECIPES`, by name, in its order; ValueError if two share a name."""
    found = {recipe.name: recipe for recipe in RECIPES}
    if len(found) != len(RECIPES):
        raise ValueError(f"two recipes of RECIPES share a name: {', '.join(r.name for r in RECIPES)}")
    return found


def reproduce(name: str, preset: str, out: Path, device: str = "auto", executor=None, progress: bool = True,
              inputs: Any = None) -> str:
    """Run recipe `name` at `preset` in its own directory `out` and report it; its summary table as text.

    Rerunning resumes (the recipe's own directory, `runs.dirs.open_recipe_dir`). A sweep recipe also
    writes OUT/sweep.json, which `rlntp sweep` takes as a starting point for a variation; OUT/report.json
    holds the command, the wall time of every call on this directory added up, each of the recipe's claims
    with its verdict and evidence, computed from the results (`experiments.claims`), and every setting of the
    preset with its provenance (`experiments.provenance`). `inputs` (an own plan's `inputs`) replace what the preset
    reads; the settings they change are marked as given on the command line.
    """
    from rlntp.experiments.claims import evaluate
    from rlntp.runs.dirs import open_recipe_dir
    from rlntp.sweeps.executors import ExecutorConfig, check_executor

    started = time.perf_counter()
    recipe = recipes()[name]
    check_choice("preset", preset, recipe.presets)
    out = Path(out)
    settings, given = _settings(recipe, preset, inputs)
    own = recipe.own_plan
    if recipe.is_sweep:
        executor = executor or ExecutorConfig()
        jobs = _jobs(recipe, preset, settings, out, device)
        check_executor(executor, jobs)
    elif own.secondary_process is not None and own.secondary_process():  # `accelerate launch`: the main one claims
        return own.run(settings, out, device, progress)[0]
    else:  # before the directory is claimed
        if own.check_inputs is not None:
            own.check_inputs(settings, inputs)
        if executor is not None:
            check_executor(executor, _jobs(recipe, preset, settings, out))
    options = "".join(f" --{key.replace('_', '-')} {value}" for key, value in given.items())
    marker = {"recipe": name, "preset": preset, "settings": jsonable(settings), "title": recipe.title,
              "order": _order(name), "command": f"rlntp reproduce {name} --preset {preset}{options} --out {out}",
              "seconds": 0.0, "claims": []}
    registered, registered_record = registration(recipe, preset)
    marker["registration"] = registered  # what the runs begin under: a resume under another is not a confirmation
    with open_recipe_dir(out, marker) as record:
        earlier = record.get("registration") or {}  # none: a directory begun before registrations existed
        began = earlier.get("began_under", earlier.get("hash"))
        if earlier.get("hash") and scope(record) != SCOPE:  # runs begun under an earlier scope resume under it
            registered, registered_record = registration(recipe, preset, scope(record))
        if began != registered["hash"]:
            registered = registered | {"kind": EXPLORATION, "began_under": began}
        if recipe.is_sweep:
            summary, results = _run_sweep(recipe, settings, jobs, out, executor, progress, preset)
        else:  # one at a time here unless executor flags were given
            summary, results = own.run(settings, out, device, progress,
                                       **({} if executor is None else {"executor": executor}))
        atomic_write_text(out / SUMMARY, summary + "\n")
        seconds = (record.get("seconds") or 0.0) + time.perf_counter() - started
        record.pop("paper", None)  # the hand-written rows of earlier versions, replaced by the claims
        record |= {"title": recipe.title, "order": _order(name), "seconds": seconds, "registration": registered,
                   "claims": evaluate(recipe.claims, results), "provenance": _provenance_rows(recipe, preset, given)}
        atomic_write_text(out / REGISTRATION, json.dumps(registered_record, indent=2) + "\n")
        atomic_write_text(out / REPORT, json.dumps(record, indent=2) + "\n")
    return summary


def status(name: str, preset: str, out: Path, inputs: Any = None) -> str:
    """Each job of recipe `name` at `preset` and its state in its directory `out`, read-only
    (`sweeps.engine.status_report`): a sweep recipe's expanded runs, or the jobs of a recipe with a plan of its
    own (`OwnPlan.jobs`: the LLM stages, the theory's simulations)."""
    from rlntp.errors import check
    from rlntp.runs.dirs import read_recipe_marker
    from rlntp.sweeps.engine import status_report

    recipe = recipes()[name]
    check_choice("preset", preset, recipe.presets)
    out = Path(out)
    marker = read_recipe_marker(out)
    check(marker is None or marker["recipe"] == name, f"{out} is the directory of the {marker and marker['recipe']!r} "
          f"recipe; pass its own --out, or `rlntp reproduce {marker and marker['recipe']} --status --out {out}`")
    settings, _ = _settings(recipe, preset, inputs)
    jobs = _jobs(recipe, preset, settings, out)
    return status_report(jobs, out) if recipe.is_sweep else status_report(jobs, out, out)  # an own plan's root: OUT


def plan(name: str, preset: str, device: str = "auto", probe: bool = True, inputs: Any = None,
         executor=None) -> dict[str, Any]:
    """What `reproduce(name, preset)` would run, and at what cost, writing nothing: the sweep's plan
    (`sweeps.plan.plan_jobs`) or the recipe's own (`OwnPlan.plan`), and every
    setting of the preset with its provenance (`experiments.provenance`)."""
    recipe = recipes()[name]
    check_choice("preset", preset, recipe.presets)
    settings, given = _settings(recipe, preset, inputs)
    if recipe.is_sweep:
        from rlntp.sweeps.plan import plan_jobs

        planned = plan_jobs(_jobs(recipe, preset, settings, Path(f"runs/{name}"), device), device, probe, executor)
    else:
        planned = recipe.own_plan.plan(settings)
    return {"recipe": name, "preset": preset, "title": recipe.title} | planned | {
        "settings": _provenance_rows(recipe, preset, given)}


def regime(name: str, preset: str, out: Path | None = None) -> list[tuple[str, int, int | str | None]]:
    """The regime of each pre-training run of recipe `name` at `preset`, before anything runs: (run, pre-training
    samples = train.steps x train.batch_size, distinct inputs of its task: an int, `rlntp.regime.BEYOND_FLOAT` from
    2^1024, or None where unknown), from the preset
    alone (`sweeps.plan.pretrain_regime`); a dataset's (multiplication) is read from its manifest under `out`
    (default runs/NAME) once `rlntp reproduce` has made it, None before. A recipe with a plan of its own (the theory,
    the LLM path) has no such runs: []. Passes over every input = samples / distinct inputs; more than 1 is the
    memorisation regime, where the recipe's claims about generalization are not judged (`experiments.claims`)."""
    recipe = recipes()[name]
    check_choice("preset", preset, recipe.presets)
    if not recipe.is_sweep:
        return []
    from rlntp.sweeps.plan import pretrain_regime

    settings, _ = _settings(recipe, preset, None)
    jobs = _jobs(recipe, preset, settings, Path(out) if out is not None else Path(f"runs/{name}"))
    return [(row["run"], row["pretrain_samples"], row["distinct_inputs"]) for row in pretrain_regime(jobs)]


def render_plan(planned: dict[str, Any]) -> str:
    """A recipe's plan as text: the counts and cost (`sweeps.plan.render`, or the own plan's lines), then every
    setting with its provenance."""
    from rlntp.experiments.provenance import Source, table
    from rlntp.sweeps.plan import render

    title = f"rlntp reproduce {planned['recipe']} --preset {planned['preset']}: {planned['title']}"
    head = render(planned, title) if "kinds" in planned else "\n".join([title, *planned["lines"]])
    rows = {row["setting"]: (row["value"], Source(row["provenance"], row["note"], row.get("quote", "")))
            for row in planned["settings"]}
    if not rows:
        return f"{head}\n\nsettings: no provenance declared for this preset"
    choices = sum(row["provenance"] == "choice" for row in planned["settings"])
    return (f"{head}\n\nsettings ({len(rows)}: {len(rows) - choices} the paper's, {choices} our choices):\n"
            + table(rows))


def _order(name: str) -> int:
    """A recipe's place in `RECIPES` (1 first), recorded in report.json: the report page's order."""
    return list(recipes()).index(name) + 1


def _jobs(recipe: Recipe, preset: str, settings: Any, out: Path, device: str = "auto") -> list:
    """The jobs `recipe` runs at `preset` into `out`: a sweep's runs (`sweeps.spec.expand`, checked), or its own
    plan's (`OwnPlan.jobs`)."""
    if recipe.own_plan is not None:
        return recipe.own_plan.jobs(settings, out)
    from rlntp.sweeps.spec import expand

    return expand(settings, device, where=f"the {recipe.name} recipe's {preset} preset", base=Path(out).resolve())


def _settings(recipe: Recipe, preset: str, inputs: Any) -> tuple[Any, dict[str, Any]]:
    """The settings of `preset` with the recipe's `inputs` applied (`OwnPlan.with_inputs`), and the values given
    that way."""
    import dataclasses

    settings = recipe.presets[preset].settings
    if inputs is None:
        return settings, {}
    given = {k: v for k, v in dataclasses.asdict(inputs).items() if v is not None}
    return recipe.own_plan.with_inputs(settings, inputs), given


def _provenance_rows(recipe: Recipe, preset: str, given: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """The preset's settings with their provenance (`experiments.provenance.as_rows`), those `given` on the command
    line marked so; none for a preset that names no source (one a test adds)."""
    from rlntp.experiments.provenance import as_rows

    rows = as_rows(recipe.presets[preset].sources(f"the {recipe.name} recipe's {preset} preset"))
    for row in rows:
        if row["setting"] in (given or {}):
            row.pop("quote", None)
            row |= {"value": given[row["setting"]], "provenance": "choice",
                    "note": f"--{row['setting'].replace('_', '-')} on the command line"}
    return rows


def _run_sweep(recipe: Recipe, spec: dict, jobs: list, out: Path, executor, progress: bool, preset: str):
    import pandas as pd

    from rlntp.sweeps.engine import RESULTS, run_sweep

    if recipe.prepare is not None:
        recipe.prepare(preset, spec, out, progress)
    run_sweep(jobs, out, executor, spec, f"recipe {recipe.name}, preset {preset}", progress)
    table = pd.read_parquet(out / RESULTS)
    return recipe.report(table, spec, out), table


def recipes_of_all(preset: str) -> dict[str, Recipe]:
    """The recipes `reproduce all` runs (those marked `in_all`), by name; ConfigError unless each has `preset`."""
    from rlntp.errors import check

    chosen = {name: recipe for name, recipe in recipes().items() if recipe.in_all}
    for name, recipe in chosen.items():  # every preset must exist before the first recipe starts
        check(preset in recipe.presets, f"recipe {name} has no preset {preset!r}; its presets: "
              + ", ".join(recipe.presets))
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
