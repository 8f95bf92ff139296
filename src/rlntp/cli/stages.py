"""The stage commands: sample, pretrain, posttrain, eval, plot, sweep and report."""

import json
from pathlib import Path
from typing import Annotated

import tyro

from rlntp.cli.parsing import Flat
from rlntp.errors import check
from rlntp.models import ModelConfig
from rlntp.sweeps.executors import ExecutorConfig
from rlntp.sweeps.spec import MAX_RUNS
from rlntp.tasks import TaskConfig
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.pretrain import PretrainConfig


def sample(task: Annotated[TaskConfig, Flat], n: int = 10, seed: int = 0, operands: str | None = None) -> None:
    """Print n sequences of a task's mixture, one per line, in the task's text format.

    Parity: inputs, outputs, EOS. Multiplication: the public line of Deng et al. (no EOS).

    Args:
        task: the mixture distribution
        n: number of sequences
        seed: seed of the sampling generator
        operands: mult: print the line of A x B (`A,B`, most significant digit first), long with
            probability p_cot (--p-cot 1: long, 0: short)
    """
    from rlntp import api

    if operands is not None:
        import torch

        from rlntp.tasks import make_task

        check(task.task == "mult", f"--operands is for --task mult, got --task {task.task}")
        t = make_task(task)
        a, b = t.parse_operands(operands)
        long = bool(torch.rand(1, generator=torch.Generator().manual_seed(seed)) < task.p_cot)
        print(t.line(a, b, long))
        return
    check_positive(n=n)
    print("\n".join(api.sample(task, n, seed)))


def pretrain(task: Annotated[TaskConfig, Flat], model: Annotated[ModelConfig, Flat],
             train: Annotated[PretrainConfig, Flat], out: Path, resume: bool = False, quiet: bool = False,
             allow_unverified: bool = False, report_to: tuple[str, ...] = (), allow_task_change: bool = False) -> None:
    """Next-token pre-training on fresh samples of the mixture; writes a run directory.

    Args:
        task: the mixture distribution
        model: the transformer
        train: optimization and bookkeeping
        out: the run directory to create (or to continue, with --resume)
        resume: continue a killed run from its last checkpoint (repeat its options)
        quiet: no progress bar
        allow_unverified: resume from a checkpoint that records no checksums (its files are not verified)
        report_to: also log to these trackers, offline, in OUT: none, tensorboard, wandb, mlflow (several allowed)
        allow_task_change: resume, or train on a dataset, made with another version of the task (its source,
            class or vocabulary; recorded in OUT/task.json)
    """
    from rlntp import api

    out = api.pretrain(task, model, train, out, resume, not quiet, allow_unverified, report_to, allow_task_change)
    print(f"wrote {out}")


def posttrain(post: Annotated[PosttrainConfig, Flat], from_: Annotated[Path, tyro.conf.arg(name="from")], out: Path,
              step: int | None = None, resume: bool = False, quiet: bool = False,
              allow_unverified: bool = False, report_to: tuple[str, ...] = (), trust_task: str | None = None,
              allow_task_change: bool = False) -> None:
    """RL post-training (STaR, REINFORCE, GRPO) from a checkpoint; writes a run directory.

    Args:
        post: the algorithm, reward and optimization
        from_: the run directory to start from (a pretrain or posttrain run)
        out: the run directory to create (or to continue, with --resume)
        step: the checkpoint of --from to start from (default: its last)
        resume: continue a killed run from its last checkpoint (repeat its options)
        quiet: no progress bar
        allow_unverified: start (or resume) from checkpoints that record no checksums (their files are not verified)
        report_to: also log to these trackers, offline, in OUT: none, tensorboard, wandb, mlflow (several allowed)
        trust_task: run this task code (FILE.py:CLASS or MODULE:CLASS) that --from names (rlntp runs no code
            named only in a file it reads)
        allow_task_change: start from (or resume) checkpoints made with another version of the task (its
            source, class or vocabulary; recorded in OUT/task.json)
    """
    from rlntp import api

    out = api.posttrain(post, from_, out, step, resume, not quiet, allow_unverified, report_to, trust_task or (),
                        allow_task_change)
    print(f"wrote {out}")


def evaluate(run_dir: tyro.conf.Positional[Path], step: int | None = None, samples: int = 2560,
             seed: int = 0, threads: int = 1, device: str = "auto",
             json_out: Annotated[bool, tyro.conf.arg(name="json")] = False, allow_unverified: bool = False,
             trust_task: str | None = None, allow_task_change: bool = False) -> None:
    """Evaluate a checkpoint of a run (fresh inputs, or its dataset's test split): accuracy and length.

    Args:
        run_dir: a run directory written by `rlntp pretrain` or `rlntp posttrain`
        step: the checkpoint to evaluate (default: the last one)
        samples: number of inputs (with a dataset: at most its test split)
        seed: seed of the evaluation inputs and sampling
        threads: CPU threads (with the seed, they fix the floats)
        device: cpu, cuda, cuda:N or auto
        json_out: print one JSON object instead of a table
        allow_unverified: evaluate a checkpoint that records no checksums (its files are not verified)
        trust_task: run this task code (FILE.py:CLASS or MODULE:CLASS) that the run names (rlntp runs no code
            named only in a file it reads)
        allow_task_change: evaluate a checkpoint made with another version of the task (its source, class or
            vocabulary), saying so
    """
    from rlntp import api

    check_positive(samples=samples)
    metrics = api.evaluate(run_dir, step, samples, seed, threads, device, allow_unverified, trust_task or (),
                           allow_task_change)
    if json_out:
        print(json.dumps(metrics))
        return
    if "task_change" in metrics:
        print(f"task changed: {metrics['task_change']}")
    print(f"checkpoint  {metrics['checkpoint']}  ({metrics['samples']} {metrics['source']}, {metrics['task']})")
    for mode in ("greedy", "sampled"):
        print(f"{mode:8s} accuracy {metrics[f'eval/{mode}_acc']:.4f}   median length "
              f"{metrics[f'eval/{mode}_len_median']:g}   P(length = {metrics['long_len']}, long) "
              f"{metrics[f'eval/{mode}_long_frac']:.4f}   P(no EOS) {metrics[f'eval/{mode}_no_eos_frac']:.4f}")
    for mode in ("greedy", "sampled"):
        hist = metrics[f"eval/{mode}_len_hist"]
        print(f"{mode:8s} length histogram (length: count) "
              + "  ".join(f"{n}: {c}" for n, c in enumerate(hist) if c))


def sweep(file: tyro.conf.Positional[Path], executor: Annotated[ExecutorConfig, Flat], out: Path | None = None,
          device: str = "auto", status: bool = False, quiet: bool = False, max_runs: int = MAX_RUNS,
          plan: bool = False, json: bool = False, trust_task: tuple[str, ...] = ()) -> None:
    """Run a sweep file (TOML): grids of pretrain and posttrain runs, then OUT/results.parquet.

    The file sets a base config per stage, axes to vary and post-training runs from named checkpoints
    (format: docs/sweeps.md). Every run is an ordinary run directory under OUT/runs. Rerunning the
    same command skips finished runs, resumes killed ones and retries failed ones; a failed run is
    recorded (OUT/status.json) and the others go on.

    Args:
        file: the sweep file (.toml, or .json of the same structure)
        out: the sweep's directory (new or empty, or one a sweep wrote); required but with --plan
        executor: where runs execute and how many at once
        device: cpu, cuda, cuda:N or auto, for every run
        status: print what is done, running, failed, partial (resumes on a rerun) and pending; run nothing
        quiet: no progress bar
        max_runs: refuse a sweep that expands to more runs than this
        plan: print what the sweep runs (runs, steps, samples, checkpoints) and its estimated cost on DEVICE from
            a short timing probe (with --executor slurm: its jobs and what each asks for); run and write nothing
        json: with --plan, print the plan as JSON
        trust_task: with --plan, let the timing probe run this task code (FILE.py:CLASS or MODULE:CLASS) that
            the sweep file names (--status and --plan import none otherwise; running the sweep runs its tasks)
    """
    from contextlib import nullcontext

    from rlntp import api
    from rlntp.runs.dirs import read_status
    from rlntp.sweeps.engine import RESULTS, status_report
    from rlntp.sweeps.spec import expand, load_sweep
    from rlntp.tasks.trust import reading
    from rlntp.tasks.trust import trust_task as allow_code

    allow_code(*trust_task)
    spec = load_sweep(file)
    with reading(str(file)) if status or plan else nullcontext():  # a query runs no task code the file names
        jobs = expand(spec, device, where=str(file), base=file.resolve().parent, max_runs=max_runs)
    check(not json or plan, "--json prints the plan: pass it with --plan")
    if plan:
        import json as json_module

        from rlntp.sweeps.plan import plan_jobs, render

        from rlntp.sweeps.slurm import with_sweep_section

        executor = with_sweep_section(executor, spec, str(file))
        planned = {"sweep": str(file)} | plan_jobs(jobs, device, executor=executor)
        print(json_module.dumps(planned, indent=2) if json else render(planned, f"rlntp sweep {file}"))
        return
    check(out is not None, "--out is required: the sweep's directory (only --plan runs without one)")
    if status:
        check(out.is_dir() and read_status(out) is not None,
              f"{out} is not a sweep directory (no {out / 'status.json'}); pass the --out of `rlntp sweep` or "
              "`rlntp reproduce`")
        print(status_report(jobs, out))
        return
    api.sweep(file, out, executor, device, not quiet, max_runs)
    print(f"{len(jobs)} runs done; wrote {out / RESULTS}")


def plot(run_dir: tyro.conf.Positional[Path], out: Path | None = None, trust_task: str | None = None) -> None:
    """Plot a run's accuracy and long-answer fraction against samples seen (paper Fig. 2 style).

    Args:
        run_dir: a run directory
        out: the PNG to write (default: RUN_DIR/plot.png)
        trust_task: run this task code (FILE.py:CLASS or MODULE:CLASS) that the run names (rlntp runs no code
            named only in a file it reads)
    """
    from rlntp import api

    print(f"wrote {api.plot(run_dir, out, trust_task or ())}")


def report(root: tyro.conf.Positional[Path], out: Path | None = None, markdown: bool = False,
           brief: bool = False) -> None:
    """Write one static HTML page of a directory of reproductions: the paper's claims with their computed verdicts,
    figures, tables, configs, commands.

    Args:
        root: a directory holding one or more recipe directories (e.g. runs/all), or one of them
        out: the HTML file to write (default: ROOT/report.html)
        markdown: print the claims as one Markdown table instead (docs/results.md is made so)
        brief: with --markdown, only recipe, claim and verdict (the README's table)
    """
    from rlntp import api
    from rlntp.report import claims_markdown

    if markdown:
        print(claims_markdown(root, brief), end="")
        return
    check(not brief, "--brief goes with --markdown")
    print(f"wrote {api.write_report(root, out)}")


def check_positive(**values: int) -> None:
    """ConfigError unless every value is >= 1."""
    for name, value in values.items():
        check(value >= 1, f"{name} must be >= 1, got {value}")


COMMANDS = {"sample": sample, "pretrain": pretrain, "posttrain": posttrain, "eval": evaluate, "plot": plot,
            "sweep": sweep, "report": report}
