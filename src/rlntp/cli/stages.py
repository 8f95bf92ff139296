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
    import torch

    from rlntp.memory import check_fits
    from rlntp.tasks import make_task

    t = make_task(task)
    check_positive(n=n)
    check_fits(n * t.context_len * 8 * 4, "cpu", f"sampling {n:,} sequences", "reduce --n")
    generator = torch.Generator().manual_seed(seed)
    if operands is not None:
        check(task.task == "mult", f"--operands is for --task mult, got --task {task.task}")
        a, b = t.parse_operands(operands)
        long = bool(torch.rand(1, generator=generator) < task.p_cot)
        print(t.line(a, b, long))
        return
    seqs = t.sample(n, generator)
    for row, length in zip(seqs.tokens.tolist(), seqs.lengths.tolist()):
        print(t.to_text(row[: t.prompt_len + length + 1]))


def pretrain(task: Annotated[TaskConfig, Flat], model: Annotated[ModelConfig, Flat],
             train: Annotated[PretrainConfig, Flat], out: Path, resume: bool = False, quiet: bool = False,
             allow_unverified: bool = False) -> None:
    """Next-token pre-training on fresh samples of the mixture; writes a run directory.

    Args:
        task: the mixture distribution
        model: the transformer
        train: optimization and bookkeeping
        out: the run directory to create (or to continue, with --resume)
        resume: continue a killed run from its last checkpoint (repeat its options)
        quiet: no progress bar
        allow_unverified: resume from a checkpoint that records no checksums (its files are not verified)
    """
    from rlntp.training.pretrain import PretrainRun
    from rlntp.training.pretrain import pretrain as run_pretrain

    run_pretrain(PretrainRun(task, model, train), out, resume=resume, progress=not quiet,
                 allow_unverified=allow_unverified)
    print(f"wrote {out}")


def posttrain(post: Annotated[PosttrainConfig, Flat], from_: Annotated[Path, tyro.conf.arg(name="from")], out: Path,
              step: int | None = None, resume: bool = False, quiet: bool = False,
              allow_unverified: bool = False) -> None:
    """RL post-training (STaR, REINFORCE, GRPO) from a checkpoint; writes a run directory.

    Args:
        post: the algorithm, reward and optimization
        from_: the run directory to start from (a pretrain or posttrain run)
        out: the run directory to create (or to continue, with --resume)
        step: the checkpoint of --from to start from (default: its last)
        resume: continue a killed run from its last checkpoint (repeat its options)
        quiet: no progress bar
        allow_unverified: start (or resume) from checkpoints that record no checksums (their files are not verified)
    """
    from rlntp.training.posttrain import PosttrainRun
    from rlntp.training.posttrain import posttrain as run_posttrain

    run_posttrain(PosttrainRun.starting_from(from_, step, post), out, resume=resume, progress=not quiet,
                  allow_unverified=allow_unverified)
    print(f"wrote {out}")


def evaluate(run_dir: tyro.conf.Positional[Path], step: int | None = None, samples: int = 2560,
             seed: int = 0, threads: int = 1, device: str = "auto",
             json_out: Annotated[bool, tyro.conf.arg(name="json")] = False, allow_unverified: bool = False) -> None:
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
    """
    from rlntp.data import make_data
    from rlntp.devices import check_threads, pinned_threads, resolve_device, seeded_generator
    from rlntp.evaluation import evaluate as run_evaluate
    from rlntp.memory import check_fits
    from rlntp.models import memory_estimate
    from rlntp.runs.checkpoints import load_checkpoint_model, resolve_checkpoint
    from rlntp.runs.dirs import read_task_and_model
    from rlntp.tasks import make_task

    check_positive(samples=samples)
    check_threads(threads)
    task_config, model_config = read_task_and_model(run_dir)
    checkpoint = resolve_checkpoint(run_dir, step)
    dev = resolve_device(device)
    task = make_task(task_config)
    data = make_data(task, task_config.data, seed, dev)
    if data.test_prompts is not None:
        samples = min(samples, len(data.test_prompts))
    check_fits(memory_estimate(model_config, task.vocab_size, task.context_len, 0, samples), dev,
               f"evaluating {samples:,} inputs", "reduce --samples")
    model = load_checkpoint_model(checkpoint, model_config, dev, allow_unverified)
    metrics = {"checkpoint": str(checkpoint), "samples": samples}
    with pinned_threads(threads):
        metrics |= run_evaluate(model, task, samples, seeded_generator(dev, seed), test_prompts=data.test_prompts)
    if json_out:
        print(json.dumps(metrics))
        return
    source = "fresh inputs" if data.test_prompts is None else f"test pairs of {task_config.data}"
    print(f"checkpoint  {checkpoint}  ({samples} {source}, {task.title})")
    for mode in ("greedy", "sampled"):
        print(f"{mode:8s} accuracy {metrics[f'eval/{mode}_acc']:.4f}   median length "
              f"{metrics[f'eval/{mode}_len_median']:g}   P(length = {task.long_len}, long) "
              f"{metrics[f'eval/{mode}_long_frac']:.4f}   P(no EOS) {metrics[f'eval/{mode}_no_eos_frac']:.4f}")
    for mode in ("greedy", "sampled"):
        hist = metrics[f"eval/{mode}_len_hist"]
        print(f"{mode:8s} length histogram (length: count) "
              + "  ".join(f"{n}: {c}" for n, c in enumerate(hist) if c))


def sweep(file: tyro.conf.Positional[Path], executor: Annotated[ExecutorConfig, Flat], out: Path | None = None,
          device: str = "auto", status: bool = False, quiet: bool = False, max_runs: int = MAX_RUNS,
          plan: bool = False, json: bool = False) -> None:
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
            a short timing probe; run and write nothing
        json: with --plan, print the plan as JSON
    """
    from rlntp.devices import resolve_device
    from rlntp.runs.dirs import open_sweep_dir, read_status
    from rlntp.sweeps.engine import new_status, run_sweep, status_report
    from rlntp.sweeps.executors import check_executor
    from rlntp.sweeps.spec import expand, load_sweep

    spec = load_sweep(file)
    jobs = expand(spec, device, where=str(file), base=file.resolve().parent, max_runs=max_runs)
    check(not json or plan, "--json prints the plan: pass it with --plan")
    if plan:
        import json as json_module

        from rlntp.sweeps.plan import plan_jobs, render

        planned = {"sweep": str(file)} | plan_jobs(jobs, device)
        print(json_module.dumps(planned, indent=2) if json else render(planned, f"rlntp sweep {file}"))
        return
    check(out is not None, "--out is required: the sweep's directory (only --plan runs without one)")
    if status:
        check(out.is_dir() and read_status(out) is not None,
              f"{out} is not a sweep directory (no {out / 'status.json'}); pass the --out of `rlntp sweep` or "
              "`rlntp reproduce`")
        print(status_report(jobs, out))
        return
    resolve_device(device)
    check_executor(executor, jobs)
    with open_sweep_dir(out, new_status(spec, str(file))):
        results = run_sweep(jobs, out, executor, spec, str(file), progress=not quiet)
    print(f"{len(jobs)} runs done; wrote {results}")


def plot(run_dir: tyro.conf.Positional[Path], out: Path | None = None) -> None:
    """Plot a run's accuracy and long-answer fraction against samples seen (paper Fig. 2 style).

    Args:
        run_dir: a run directory
        out: the PNG to write (default: RUN_DIR/plot.png)
    """
    from rlntp.plots import plot_run

    print(f"wrote {plot_run(run_dir, out)}")


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
    from rlntp.report import claims_markdown, write_report

    if markdown:
        print(claims_markdown(root, brief), end="")
        return
    check(not brief, "--brief goes with --markdown")
    print(f"wrote {write_report(root, out)}")


def check_positive(**values: int) -> None:
    """ConfigError unless every value is >= 1."""
    for name, value in values.items():
        check(value >= 1, f"{name} must be >= 1, got {value}")


COMMANDS = {"sample": sample, "pretrain": pretrain, "posttrain": posttrain, "eval": evaluate, "plot": plot,
            "sweep": sweep, "report": report}
