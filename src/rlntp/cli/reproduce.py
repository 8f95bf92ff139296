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

    found = {name: _command(module) for name, module in recipes().items()}
    return found | {"all": reproduce_all}


def _command(module):
    """The command of one recipe: its help from the recipe's declaration, its defaults from its presets."""
    from rlntp.experiments import is_sweep

    recipe = module.RECIPE
    default = next(iter(recipe.presets))

    def run(out: Path, preset: str, device: str, quiet: bool, executor: ExecutorConfig | None = None,
            plan: bool = False, as_json: bool = False, inputs=None, status: bool = False) -> None:
        from rlntp.devices import resolve_device
        from rlntp.experiments import reproduce

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

        if is_sweep(module):
            resolve_device(device)
        summary = reproduce(recipe.name, preset, out, device, executor, progress=not quiet, inputs=inputs)
        if summary:  # an `accelerate launch`'s secondary processes report nothing
            print(summary)
            claims = json.loads((out / "report.json").read_text()).get("claims", [])
            if claims:
                print("\nThe paper's claims, judged by their criteria (criteria and evidence: report.json):")
                for claim in claims:
                    print(f"  {claim['verdict']:>14s}  {claim['claim']}")
            written = sorted(p.name for p in out.glob("*.png")) + ["summary.txt", "report.json"]
            print(f"wrote {out}: " + ", ".join(written + (["results.parquet"] if is_sweep(module) else [])))

    if is_sweep(module):
        def command(executor: Annotated[ExecutorConfig, Flat], out: Path = Path(f"runs/{recipe.name}"),
                    preset: str = default, device: str = "auto", quiet: bool = False, plan: bool = False,
                    json: bool = False, status: bool = False) -> None:
            run(out, preset, device, quiet, executor, plan, json, status=status)
    elif hasattr(module, "INPUTS"):
        def command(inputs: Annotated[module.INPUTS, Flat], executor: Annotated[ExecutorConfig, Flat],
                    out: Path = Path(f"runs/{recipe.name}"), preset: str = default, device: str = "auto",
                    quiet: bool = False, plan: bool = False, json: bool = False, status: bool = False) -> None:
            run(out, preset, device, quiet, _given(executor), plan, json, inputs, status)
    else:
        def command(executor: Annotated[ExecutorConfig, Flat], out: Path = Path(f"runs/{recipe.name}"),
                    preset: str = default, device: str = "auto", quiet: bool = False, plan: bool = False,
                    json: bool = False, status: bool = False) -> None:
            run(out, preset, device, quiet, _given(executor), plan, json, status=status)

    presets = "; ".join(f"{name} ({text})" for name, text in recipe.presets.items())
    executor_help = ("\n        executor: where runs execute and how many at once" if is_sweep(module) else
                     "\n        inputs: the records to read in place of the preset's" * hasattr(module, "INPUTS")
                     + "\n        executor: where its jobs execute (default: one at a time in this process)")
    command.__name__ = command.__qualname__ = recipe.name
    command.__doc__ = f"""{recipe.title}.

    Args:{executor_help}
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
