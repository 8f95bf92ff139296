"""The `rlntp` command line: one subcommand per stage, options generated from the stage's dataclass."""

import json
import sys
from pathlib import Path
from typing import Annotated

import tyro

from rlntp.errors import UserError

Flat = tyro.conf.arg(name="")  # a config dataclass whose fields become top-level --options


def sample(task: Annotated["TaskConfig", Flat], n: int = 10, seed: int = 0) -> None:
    """Print n sequences of a task's mixture, one per line: inputs, outputs, EOS.

    Args:
        task: the mixture distribution
        n: number of sequences
        seed: seed of the sampling generator
    """
    import torch

    from rlntp.tasks import make_task
    from rlntp.tasks.parity import format_tokens

    t = make_task(task)
    check_positive(n=n)
    seqs = t.sample(n, torch.Generator().manual_seed(seed))
    for row, length in zip(seqs.tokens.tolist(), seqs.lengths.tolist()):
        print(format_tokens(row[: t.prompt_len + length + 1]))


def pretrain(task: Annotated["TaskConfig", Flat], model: Annotated["ModelConfig", Flat],
             train: Annotated["PretrainConfig", Flat], out: Path, resume: bool = False, quiet: bool = False) -> None:
    """Next-token pre-training on fresh samples of the mixture; writes a run directory.

    Args:
        task: the mixture distribution
        model: the transformer
        train: optimization and bookkeeping
        out: the run directory to create (or to continue, with --resume)
        resume: continue a killed run from its last checkpoint (repeat its options)
        quiet: no progress bar
    """
    from rlntp.training.pretrain import PretrainRun, pretrain as run_pretrain

    run_pretrain(PretrainRun(task, model, train), out, resume=resume, progress=not quiet)
    print(f"wrote {out}")


def evaluate(run_dir: tyro.conf.Positional[Path], step: int | None = None, samples: int = 2560,
             seed: int = 0, device: str = "auto", json_out: Annotated[bool, tyro.conf.arg(name="json")] = False) -> None:
    """Evaluate a checkpoint of a run on fresh inputs: accuracy and length, greedy and sampled.

    Args:
        run_dir: a run directory written by `rlntp pretrain`
        step: the checkpoint to evaluate (default: the last one)
        samples: number of fresh inputs
        seed: seed of the evaluation inputs and sampling
        device: cpu, cuda, cuda:N or auto
        json_out: print one JSON object instead of a table
    """
    from rlntp import runs
    from rlntp.devices import resolve_device, seeded_generator
    from rlntp.evaluation import evaluate as run_evaluate
    from rlntp.models import load_model
    from rlntp.tasks import make_task
    from rlntp.training.pretrain import PretrainRun

    check_positive(samples=samples)
    run = PretrainRun.from_dict(runs.read_config(run_dir))
    checkpoint = runs.resolve_checkpoint(run_dir, step)
    dev = resolve_device(device)
    task = make_task(run.task)
    model = load_model(checkpoint, run.model, dev)
    metrics = {"checkpoint": str(checkpoint), "samples": samples}
    metrics |= run_evaluate(model, task, samples, seeded_generator(dev, seed))
    if json_out:
        print(json.dumps(metrics))
        return
    print(f"checkpoint  {checkpoint}  ({samples} fresh inputs, d = {task.d})")
    for mode in ("greedy", "sampled"):
        print(f"{mode:8s} accuracy {metrics[f'eval/{mode}_acc']:.4f}   median length "
              f"{metrics[f'eval/{mode}_len_median']:g}   P(length = d) {metrics[f'eval/{mode}_long_frac']:.4f}")
    for mode in ("greedy", "sampled"):
        hist = metrics[f"eval/{mode}_len_hist"]
        print(f"{mode:8s} length histogram (length: count) "
              + "  ".join(f"{n}: {c}" for n, c in enumerate(hist) if c))


def plot(run_dir: tyro.conf.Positional[Path], out: Path | None = None) -> None:
    """Plot a run's accuracy and long-answer fraction against samples seen (paper Fig. 2 style).

    Args:
        run_dir: a run directory
        out: the PNG to write (default: RUN_DIR/plot.png)
    """
    from rlntp.plots import plot_pretrain

    print(f"wrote {plot_pretrain(run_dir, out)}")


def check_positive(**values: int) -> None:
    from rlntp.errors import check

    for name, value in values.items():
        check(value >= 1, f"{name} must be >= 1, got {value}")


COMMANDS = {"sample": sample, "pretrain": pretrain, "eval": evaluate, "plot": plot}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `rlntp` console script."""
    _resolve_annotations()
    try:
        tyro.extras.subcommand_cli_from_dict(COMMANDS, prog="rlntp", args=argv,
                                             description="RL after next-token prediction (Tsilivis et al., 2025)")
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def _resolve_annotations() -> None:
    """Import the config dataclasses named in the signatures only when the CLI runs (fast --help)."""
    from rlntp.models import ModelConfig
    from rlntp.tasks import TaskConfig
    from rlntp.training.pretrain import PretrainConfig

    globals().update(TaskConfig=TaskConfig, ModelConfig=ModelConfig, PretrainConfig=PretrainConfig)


if __name__ == "__main__":
    main()
