"""`rlntp reproduce NAME|all`: one command per recipe of the registry (`rlntp.experiments`), and all of them."""

import json
from pathlib import Path
from typing import Annotated

from rlntp.cli.parsing import Flat
from rlntp.errors import check
from rlntp.sweeps.executors import ExecutorConfig

DESCRIPTION = ("The paper's figures as recipes: runs, figures, summary tables and the paper's claims with verdicts "
               "computed from the results; rerunning a recipe's command resumes it")
RERUN_HINT = "rerun the same command to continue"


def commands() -> dict:
    from rlntp.experiments import recipes

    return {name: _command(recipe) for name, recipe in recipes().items()} | {"all": reproduce_all}


def _command(recipe):
    """The command of one recipe: its help from the recipe's title and presets, its defaults from its presets, and
    its extra options from how it runs: the executor (of its runs, or of its own plan's jobs) and the inputs of an own
    plan that takes some."""
    import inspect

    own = recipe.own_plan
    extras = [("executor", ExecutorConfig, "executor: where runs execute and how many at once" if recipe.is_sweep
               else "executor: where its jobs execute (default: one at a time in this process)")]
    if own is not None and own.inputs is not None:
        extras.insert(0, ("inputs", own.inputs, "inputs: the records to read in place of the preset's"))

    def command(out: Path, preset: str, device: str, quiet: bool, plan: bool, json: bool, status: bool,
                **given) -> None:
        executor = given["executor"] if recipe.is_sweep else _given(given["executor"])
        _run(recipe, out, preset, device, quiet, plan, json, status, executor, given.get("inputs"))

    # the command line is generated from the signature (`parsing.run_commands`), so the signature is built here: the
    # recipe's extra options, then the options every recipe has
    option = inspect.Parameter.KEYWORD_ONLY
    parameters = [inspect.Parameter(name, option, annotation=Annotated[kind, Flat]) for name, kind, _ in extras]
    parameters += [inspect.Parameter(name, option, default=default, annotation=kind) for name, kind, default in (
        ("out", Path, Path(f"runs/{recipe.name}")), ("preset", str, next(iter(recipe.presets))),
        ("device", str, "auto"), ("quiet", bool, False), ("plan", bool, False), ("json", bool, False),
        ("status", bool, False))]
    command.__signature__ = inspect.Signature(parameters, return_annotation=None)
    command.__annotations__ = {p.name: p.annotation for p in parameters} | {"return": None}
    command.__name__ = command.__qualname__ = recipe.name
    presets = "; ".join(f"{name} ({preset.description})" for name, preset in recipe.presets.items())
    extra_lines = "".join(f"\n        {text}" for _, _, text in extras)
    command.__doc__ = f"""{recipe.title}.

    Args:{extra_lines}
        out: the recipe's directory: its runs, results, figures (PNG), summary.txt and report.json
        preset: {presets}
        device: cpu, cuda, cuda:N or auto
        quiet: no progress bars
        plan: print what the preset runs (runs, steps, samples, checkpoints), every setting with its provenance
            (the paper's or our choice) and the estimated cost on DEVICE from a short timing probe; run and write
            nothing
        json: with --plan, print the plan as JSON
        status: print each job of the preset and its state in OUT (done, running, failed, partial, pending...):
            a sweep recipe's runs, or its stages' jobs (data, SFT, GRPO, evaluations; the simulations); run nothing
    """
    return command


def _run(recipe, out: Path, preset: str, device: str, quiet: bool, plan: bool, as_json: bool, status: bool,
         executor: ExecutorConfig | None, inputs) -> None:
    """`rlntp reproduce NAME`: print the plan or the jobs' states, or run the recipe and print its summary and
    claims."""
    from rlntp.devices import resolve_device
    from rlntp.experiments import reproduce
    from rlntp.report import regime_of

    check(not as_json or plan, "--json prints the plan: pass it with --plan")
    check(not (status and plan), "--status and --plan: pass one of them")
    if status:
        from rlntp.experiments import status as job_states

        print(job_states(recipe.name, preset, out, inputs))
        return
    if plan:
        from rlntp.experiments import plan as make_plan
        from rlntp.experiments import render_plan

        planned = make_plan(recipe.name, preset, device, inputs=inputs, executor=executor)
        print(json.dumps(planned, indent=2) if as_json else render_plan(planned))
        return
    if recipe.is_sweep:
        resolve_device(device)
    summary = reproduce(recipe.name, preset, out, device, executor, progress=not quiet, inputs=inputs)
    if summary:  # an `accelerate launch`'s secondary processes report nothing
        print(summary)
        claims = json.loads((out / "report.json").read_text()).get("claims", [])
        if claims:
            print("\nThe paper's claims, judged by their criteria (criteria and evidence: report.json):")
            for claim in claims:
                found = regime_of(claim)
                print(f"  {claim['verdict']:>14s}  {claim['claim']}" + (f"  [{found[0]}]" if found else ""))
            regimes = dict.fromkeys(found[1] for claim in claims if (found := regime_of(claim)))
            for text in regimes:
                print(f"pre-training regime: {text}")
        written = sorted(p.name for p in out.glob("*.png")) + ["summary.txt", "report.json"]
        print(f"wrote {out}: " + ", ".join(written + (["results.parquet"] if recipe.is_sweep else [])))


def _given(executor: ExecutorConfig) -> ExecutorConfig | None:
    """The executor flags of a recipe with a plan of its own, None where none was given (its jobs then run one at a
    time in this process)."""
    return None if executor == ExecutorConfig() else executor


def reproduce_all(executor: Annotated[ExecutorConfig, Flat], out: Path = Path("runs/all"), preset: str = "cpu",
                  device: str = "auto", quiet: bool = False, plan: bool = False, json: bool = False) -> None:
    """Every recipe of `reproduce all` (the parity figures and the theory) into OUT/NAME, and OUT/report.html.

    Rerunning the same command resumes: finished recipes are skipped, a killed one continues.

    Args:
        executor: where runs execute and how many at once
        out: directory holding one directory per recipe, and report.html
        preset: cpu or paper (the paper's sizes, for GPUs)
        device: cpu, cuda, cuda:N or auto
        quiet: no progress bars
        plan: print the plan of every recipe (as `rlntp reproduce NAME --plan` does, each from its own timing
            probe) and their total estimated cost on DEVICE; run and write nothing
        json: with --plan, print the plan as JSON
    """
    import json as json_module

    from rlntp import api

    check(not json or plan, "--json prints the plan: pass it with --plan")
    if plan:
        from rlntp.experiments import render_plan_all

        planned = api.plan("all", preset, device)
        print(json_module.dumps(planned, indent=2) if json else render_plan_all(planned))
        return
    print(api.reproduce("all", preset, out, device, executor, progress=not quiet)["summary"])
