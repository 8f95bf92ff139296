"""rlntp as a Python library: the stages, sweeps and recipes as functions over the config dataclasses.

    import rlntp
    from rlntp import TaskConfig, ModelConfig, PretrainConfig, PosttrainConfig

    task = TaskConfig(task="parity", d=8, p_cot=0.25)
    rlntp.pretrain(task, ModelConfig(), PretrainConfig(steps=2000), "runs/pre")
    rlntp.posttrain(PosttrainConfig(algo="grpo", steps=100), "runs/pre", "runs/grpo")
    rlntp.metrics("runs/grpo")             # a DataFrame: step, samples_seen, eval/...
    rlntp.evaluate("runs/grpo")            # accuracy and length of the last checkpoint

Every function validates its configs before any work and keeps the run-directory guarantees of the
command line (a new or empty directory, one writer, atomic checkpoints, `resume=True` to continue a
killed run); the CLI (`rlntp.cli`) is a thin layer over these functions. Failures of the caller's input
raise `rlntp.errors.UserError` subclasses (`ConfigError`, `RunDirError`) with the CLI's one-line message.
The page docs/api.md lists every public name.
"""

from pathlib import Path
from typing import Any

from rlntp.models import ModelConfig
from rlntp.sweeps.executors import ExecutorConfig
from rlntp.sweeps.spec import MAX_RUNS
from rlntp.tasks import TaskConfig
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.pretrain import PretrainConfig


def sample(task: TaskConfig | None = None, n: int = 10, seed: int = 0) -> list[str]:
    """`n` sequences of the task's mixture in its text format (prompt, output, EOS), as `rlntp sample` prints."""
    import torch

    from rlntp.errors import check
    from rlntp.memory import check_fits
    from rlntp.tasks import make_task

    t = make_task(task or TaskConfig())
    check(n >= 1, f"n must be >= 1, got {n}")
    check_fits(n * t.context_len * 8 * 4, "cpu", f"sampling {n:,} sequences", "reduce n")
    seqs = t.sample(n, torch.Generator().manual_seed(seed))
    return [t.to_text(row[: t.prompt_len + length + 1]) for row, length in zip(seqs.tokens.tolist(),
                                                                               seqs.lengths.tolist())]


def pretrain(task: TaskConfig, model: ModelConfig, train: PretrainConfig, out: str | Path, resume: bool = False,
             progress: bool = True, allow_unverified: bool = False, report_to: tuple[str, ...] = ()) -> Path:
    """Next-token pre-training on the task's mixture into the run directory `out` (new or empty; `resume` continues
    a killed run with the same configs); `report_to`: trackers (tensorboard, wandb, mlflow) that also log it;
    returns `out`."""
    from rlntp.training.pretrain import PretrainRun
    from rlntp.training.pretrain import pretrain as run_pretrain

    run_pretrain(PretrainRun(task, model, train), Path(out), resume=resume, progress=progress,
                 allow_unverified=allow_unverified, report_to=tuple(report_to))
    return Path(out)


def posttrain(post: PosttrainConfig, from_run: str | Path, out: str | Path, step: int | None = None,
              resume: bool = False, progress: bool = True, allow_unverified: bool = False,
              report_to: tuple[str, ...] = ()) -> Path:
    """RL post-training (STaR, REINFORCE, GRPO: `post.algo`) from checkpoint `step` (default: the last) of the run
    directory `from_run` into `out`; `report_to`: trackers that also log it; returns `out`."""
    from rlntp.training.posttrain import PosttrainRun
    from rlntp.training.posttrain import posttrain as run_posttrain

    run_posttrain(PosttrainRun.starting_from(Path(from_run), step, post), Path(out), resume=resume,
                  progress=progress, allow_unverified=allow_unverified, report_to=tuple(report_to))
    return Path(out)


def evaluate(run_dir: str | Path, step: int | None = None, samples: int = 2560, seed: int = 0, threads: int = 1,
             device: str = "auto", allow_unverified: bool = False) -> dict[str, Any]:
    """Greedy and sampled accuracy and length of a checkpoint (default: the last) on fresh inputs, or its dataset's
    test split: {"checkpoint", "samples", "eval/greedy_acc", "eval/sampled_len_hist", ...}."""
    from rlntp.data import make_data
    from rlntp.devices import check_threads, pinned_threads, resolve_device, seeded_generator
    from rlntp.errors import check
    from rlntp.evaluation import evaluate as run_evaluate
    from rlntp.memory import check_fits
    from rlntp.models import memory_estimate
    from rlntp.runs.checkpoints import load_checkpoint_model, resolve_checkpoint
    from rlntp.runs.dirs import read_task_and_model
    from rlntp.tasks import make_task

    run_dir = Path(run_dir)
    check(samples >= 1, f"samples must be >= 1, got {samples}")
    check_threads(threads)
    task_config, model_config = read_task_and_model(run_dir)
    checkpoint = resolve_checkpoint(run_dir, step)
    dev = resolve_device(device)
    task = make_task(task_config)
    data = make_data(task, task_config.data, seed, dev)
    if data.test_prompts is not None:
        samples = min(samples, len(data.test_prompts))
    check_fits(memory_estimate(model_config, task.vocab_size, task.context_len, 0, samples), dev,
               f"evaluating {samples:,} inputs", "reduce samples")
    model = load_checkpoint_model(checkpoint, model_config, dev, allow_unverified)
    metrics = {"checkpoint": str(checkpoint), "samples": samples, "source": "fresh inputs" if data.test_prompts is None
               else f"test pairs of {task_config.data}", "task": task.title, "long_len": task.long_len}
    with pinned_threads(threads):
        metrics |= run_evaluate(model, task, samples, seeded_generator(dev, seed), test_prompts=data.test_prompts)
    return metrics


def metrics(run_dir: str | Path):
    """A run's metrics.jsonl as a pandas DataFrame, one row per evaluation (`step`, `samples_seen`, `eval/...`)."""
    import pandas as pd

    from rlntp.runs.metrics import read_metrics

    return pd.DataFrame(read_metrics(Path(run_dir)))


def sweep(spec: dict[str, Any] | str | Path, out: str | Path, executor: ExecutorConfig | None = None,
          device: str = "auto", progress: bool = True, max_runs: int = MAX_RUNS):
    """Run a sweep (a sweep file's path, or its contents as a dictionary: docs/sweeps.md) into `out`; returns its
    results table (OUT/results.parquet) as a DataFrame. Rerunning resumes, like `rlntp sweep`."""
    import pandas as pd

    from rlntp.devices import resolve_device
    from rlntp.runs.dirs import open_sweep_dir
    from rlntp.sweeps.engine import new_status, run_sweep
    from rlntp.sweeps.executors import check_executor
    from rlntp.sweeps.slurm import with_sweep_section

    spec, where, base = _sweep_spec(spec)
    jobs = _expand(spec, device, where, base, max_runs)
    executor = with_sweep_section(executor or ExecutorConfig(), spec, where)
    resolve_device(device)
    check_executor(executor, jobs)
    with open_sweep_dir(Path(out), new_status(spec, where)):
        results = run_sweep(jobs, Path(out), executor, spec, where, progress=progress)
    return pd.read_parquet(results)


def plan_sweep(spec: dict[str, Any] | str | Path, device: str = "auto", max_runs: int = MAX_RUNS) -> dict[str, Any]:
    """What `sweep(spec)` would run and cost, writing nothing (`rlntp sweep FILE --plan --json`)."""
    from rlntp.sweeps.plan import plan_jobs

    spec, where, base = _sweep_spec(spec)
    return {"sweep": where} | plan_jobs(_expand(spec, device, where, base, max_runs), device)


def _sweep_spec(spec: dict[str, Any] | str | Path) -> tuple[dict[str, Any], str, Path]:
    """(the sweep as a dictionary, where it came from, the directory its relative paths are relative to)."""
    from rlntp.sweeps.spec import load_sweep

    if isinstance(spec, dict):
        return spec, "a sweep given in Python", Path.cwd()
    path = Path(spec)
    return load_sweep(path), str(path), path.resolve().parent


def _expand(spec: dict[str, Any], device: str, where: str, base: Path, max_runs: int) -> list:
    from rlntp.sweeps.spec import expand

    return expand(spec, device, where=where, base=base, max_runs=max_runs)


def recipes() -> dict[str, str]:
    """The recipes `reproduce` runs (the paper's figures), by name, with their titles."""
    from rlntp.experiments import recipes as found

    return {name: module.RECIPE.title for name, module in found().items()}


def reproduce(name: str, preset: str | None = None, out: str | Path | None = None, device: str = "auto",
              executor: ExecutorConfig | None = None, progress: bool = True, inputs: Any = None) -> dict[str, Any]:
    """Run recipe `name` (see `recipes()`) at `preset` (default: its first) into `out` (default: runs/NAME) and
    return its report: {"summary", "claims" (each with its verdict and evidence), "provenance", ...}, as
    OUT/report.json holds it. `inputs`: the recipe's INPUTS (the LLM recipes' records). Rerunning resumes."""
    import json

    from rlntp.experiments import REPORT
    from rlntp.experiments import recipes as found
    from rlntp.experiments import reproduce as run

    module = found()[name] if name in found() else None
    preset = preset or (next(iter(module.PRESETS)) if module is not None else "")
    out = Path(out) if out is not None else Path("runs") / name
    summary = run(name, preset, out, device, executor, progress, inputs=inputs)
    return json.loads((out / REPORT).read_text()) | {"summary": summary}


def plan(name: str, preset: str | None = None, device: str = "auto") -> dict[str, Any]:
    """What `reproduce(name, preset)` would run and cost, with every setting's provenance; writes nothing."""
    from rlntp.experiments import plan as make_plan
    from rlntp.experiments import recipes as found

    module = found().get(name)
    return make_plan(name, preset or (next(iter(module.PRESETS)) if module is not None else ""), device)


def plot(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Accuracy and long-answer fraction of a run against samples seen (Fig. 2 style) as a PNG; returns its path."""
    from rlntp.plots import plot_run

    return Path(plot_run(Path(run_dir), None if out is None else Path(out)))


def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    """One static HTML page of the reproductions under `root` (claims, figures, tables); returns its path."""
    from rlntp.report import write_report as write

    return Path(write(Path(root), None if out is None else Path(out)))


__all__ = ["TaskConfig", "ModelConfig", "PretrainConfig", "PosttrainConfig", "ExecutorConfig", "sample", "pretrain",
           "posttrain", "evaluate", "metrics", "sweep", "plan_sweep", "recipes", "reproduce", "plan", "plot",
           "write_report"]
