"""The `rlntp` command line: one subcommand per stage, options generated from the stage's dataclass."""

import contextlib
import dataclasses
import functools
import io
import json
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import tyro

from rlntp.config import check_arguments
from rlntp.errors import Interrupted, UserError

if TYPE_CHECKING:  # resolved at run time by _resolve_annotations
    from rlntp.models import ModelConfig
    from rlntp.sweeps.executors import ExecutorConfig
    from rlntp.tasks import TaskConfig
    from rlntp.training.posttrain import PosttrainConfig
    from rlntp.training.pretrain import PretrainConfig

Flat = tyro.conf.arg(name="")  # a config dataclass whose fields become top-level --options


def sample(task: Annotated["TaskConfig", Flat], n: int = 10, seed: int = 0, operands: str | None = None) -> None:
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

    from rlntp.errors import check
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


def data_mult(digits: int = 4, p_cot: float = 0.25, train: int = 808_000, valid: int = 1000, test: int = 1000,
              seed: int = 0, out: Path = Path("data/mult"), from_text: tuple[str, ...] = ()) -> None:
    """Make a multiplication dataset: distinct n-digit operand pairs, no pair in two splits (paper App. B.2).

    Writes train/valid/test Parquet files (`datasets.load_dataset("parquet", data_dir=OUT)` reads them),
    a manifest of how they were made and the word-level tokenizer. Each training row keeps its chain
    of thought with probability p_cot; valid and test rows keep theirs. Same options, same bytes.

    Args:
        digits: digits n of each operand (2 .. 9)
        p_cot: probability that a training row keeps its chain of thought
        train: training pairs to draw (paper: 808,000)
        valid: validation pairs to draw
        test: test pairs to draw (paper: 1,000)
        seed: seed of the pairs and of the long/short decisions
        out: the dataset directory to create (must not exist or be empty)
        from_text: import splits from public text files of Deng et al. instead of drawing them,
            as SPLIT=FILE (e.g. train=4_by_4_mult/train.txt test=4_by_4_mult/test_bigbench.txt)
    """
    from rlntp.errors import check
    from rlntp.tasks.multiplication import make_dataset

    files = {}
    for item in from_text:
        split, sep, path = item.partition("=")
        check(bool(sep) and bool(path), f"--from-text takes SPLIT=FILE (train, valid or test), got {item!r}")
        files[split] = Path(path)
    make_dataset(out, digits, p_cot, {"train": train, "valid": valid, "test": test}, seed, files)
    print(f"wrote {out}")


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


def posttrain(post: Annotated["PosttrainConfig", Flat], from_: Annotated[Path, tyro.conf.arg(name="from")], out: Path,
              step: int | None = None, resume: bool = False, quiet: bool = False) -> None:
    """RL post-training (STaR, REINFORCE, GRPO) from a checkpoint; writes a run directory.

    Args:
        post: the algorithm, reward and optimization
        from_: the run directory to start from (a pretrain or posttrain run)
        out: the run directory to create (or to continue, with --resume)
        step: the checkpoint of --from to start from (default: its last)
        resume: continue a killed run from its last checkpoint (repeat its options)
        quiet: no progress bar
    """
    from rlntp.training.posttrain import PosttrainRun, posttrain as run_posttrain

    run_posttrain(PosttrainRun.starting_from(from_, step, post), out, resume=resume, progress=not quiet)
    print(f"wrote {out}")


def evaluate(run_dir: tyro.conf.Positional[Path], step: int | None = None, samples: int = 2560,
             seed: int = 0, device: str = "auto", json_out: Annotated[bool, tyro.conf.arg(name="json")] = False) -> None:
    """Evaluate a checkpoint of a run (fresh inputs, or its dataset's test split): accuracy and length.

    Args:
        run_dir: a run directory written by `rlntp pretrain` or `rlntp posttrain`
        step: the checkpoint to evaluate (default: the last one)
        samples: number of inputs (with a dataset: at most its test split)
        seed: seed of the evaluation inputs and sampling
        device: cpu, cuda, cuda:N or auto
        json_out: print one JSON object instead of a table
    """
    from rlntp import runs
    from rlntp.data import make_data
    from rlntp.devices import resolve_device, seeded_generator
    from rlntp.evaluation import evaluate as run_evaluate
    from rlntp.memory import check_fits
    from rlntp.models import memory_estimate
    from rlntp.tasks import make_task

    check_positive(samples=samples)
    task_config, model_config = runs.read_task_and_model(run_dir)
    checkpoint = runs.resolve_checkpoint(run_dir, step)
    dev = resolve_device(device)
    task = make_task(task_config)
    data = make_data(task, task_config.data, seed, dev)
    if data.test_prompts is not None:
        samples = min(samples, len(data.test_prompts))
    check_fits(memory_estimate(model_config, task.vocab_size, task.context_len, 0, samples), dev,
               f"evaluating {samples:,} inputs", "reduce --samples")
    model = runs.load_checkpoint_model(checkpoint, model_config, dev)
    metrics = {"checkpoint": str(checkpoint), "samples": samples}
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


def sweep(file: tyro.conf.Positional[Path], out: Path, executor: Annotated["ExecutorConfig", Flat],
          device: str = "auto", status: bool = False, quiet: bool = False) -> None:
    """Run a sweep file (TOML): grids of pretrain and posttrain runs, then OUT/results.parquet.

    The file sets a base config per stage, axes to vary and post-training runs from named checkpoints
    (format: README, "Sweeps"). Every run is an ordinary run directory under OUT/runs. Rerunning the
    same command skips finished runs, resumes killed ones and retries failed ones; a failed run is
    recorded (OUT/status.json) and the others go on.

    Args:
        file: the sweep file (.toml, or .json of the same structure)
        out: the sweep's directory (new or empty, or one this sweep wrote)
        executor: where runs execute and how many at once
        device: cpu, cuda, cuda:N or auto, for every run
        status: print what is done, running, failed, partial (resumes on a rerun) and pending; run nothing
        quiet: no progress bar
    """
    from rlntp.devices import resolve_device
    from rlntp.runs import open_sweep_dir
    from rlntp.sweeps.engine import run_sweep, status_report
    from rlntp.sweeps.executors import check_executor
    from rlntp.sweeps.spec import expand, load_sweep

    spec = load_sweep(file)
    jobs = expand(spec, device, where=str(file))
    if status:
        print(status_report(jobs, out))
        return
    resolve_device(device)
    check_executor(executor)
    with open_sweep_dir(out, spec):
        results = run_sweep(jobs, out, executor, progress=not quiet)
    print(f"{len(jobs)} runs done; wrote {results}")


def plot(run_dir: tyro.conf.Positional[Path], out: Path | None = None) -> None:
    """Plot a run's accuracy and long-answer fraction against samples seen (paper Fig. 2 style).

    Args:
        run_dir: a run directory
        out: the PNG to write (default: RUN_DIR/plot.png)
    """
    from rlntp.plots import plot_run

    print(f"wrote {plot_run(run_dir, out)}")


def report(root: tyro.conf.Positional[Path], out: Path | None = None) -> None:
    """Write one static HTML page of a directory of reproductions: figures, tables, configs, commands.

    Args:
        root: a directory holding one or more recipe directories (e.g. runs/all), or one of them
        out: the HTML file to write (default: ROOT/report.html)
    """
    from rlntp.report import write_report

    print(f"wrote {write_report(root, out)}")


def _sweep_recipe(name: str, summary: str, presets: str):
    """The `rlntp reproduce NAME` command of a recipe that runs as a sweep (`rlntp.experiments.reproduce`)."""

    def command(executor: Annotated["ExecutorConfig", Flat], out: Path = Path(f"runs/{name}"), preset: str = "cpu",
                device: str = "auto", quiet: bool = False) -> None:
        from rlntp.devices import resolve_device
        from rlntp.experiments import reproduce

        resolve_device(device)
        print(reproduce(name, preset, out, device, executor, progress=not quiet))
        figures = ", ".join(str(path) for path in sorted(out.glob("*.png")))
        print(f"wrote {figures}, {out / 'summary.txt'} and {out / 'results.parquet'}")

    command.__name__ = command.__qualname__ = name
    command.__doc__ = f"""{summary}

    Rerunning the same command resumes: finished runs are skipped, killed ones continue.

    Args:
        executor: where runs execute and how many at once
        out: directory of the recipe's runs, results.parquet, figures (PNG) and summary.txt
        preset: {presets}
        device: cpu, cuda, cuda:N or auto
        quiet: no progress bar
    """
    return command


fig1 = _sweep_recipe("fig1", "Figure 1: pre-training at p_cot = 0.25, then GRPO from several checkpoints.",
                     "cpu (2 cores, about a minute) or paper (d = 50, 50,000 steps, 3 seeds; for a GPU)")
fig2 = _sweep_recipe("fig2", "Figure 2: pre-training at several p_cot over seeds; final greedy accuracy against "
                     "p_cot beside Theorem 1 (threshold 1/3).",
                     "cpu (d = 12, 9 p_cot x 3 seeds; 2 cores, --workers 2: about 15 minutes) or paper (d = 25, "
                     "50,000 steps; GPUs)")
fig3 = _sweep_recipe("fig3", "Figure 3: STaR / REINFORCE / GRPO x e2e / CoT reward x temperatures from one checkpoint.",
                     "cpu (2 cores, a few minutes) or paper (d = 50 from 20,000 steps, 3 seeds; for a GPU)")
fig13 = _sweep_recipe("fig13", "Figure 13: samples to >= 95% greedy accuracy as d grows, NTP alone vs NTP + GRPO "
                      "from a ladder of checkpoints.",
                      "cpu (d = 4, 6, 8, 10 x 3 seeds; 2 cores, --workers 2: about 12 minutes) or paper (GPT-2 "
                      "4 x 128, 32 heads, d = 6..12; GPUs)")
arch = _sweep_recipe("arch", "Figures 6-8: GPT-2 and Mistral at depth 2 / 4 / 8 over widths x heads; pre-training, "
                     "then GRPO from the last checkpoint.",
                     "cpu (d = 10, width 64, 4 and 8 heads, 1 seed; 2 cores, about 20 minutes) or paper (d = 50, "
                     "widths 128 and 256, 3 seeds; GPUs)")
rare = _sweep_recipe("rare", "Figures 9-11: STaR / REINFORCE / GRPO x temperatures at two smaller p_cot, from an "
                     "early and a late checkpoint.",
                     "cpu (d = 8, p_cot = 0.1 and 0.15, 3 seeds; 2 cores, --workers 2: about 8 minutes) or paper (d = 50, from 20k and "
                     "50k steps; GPUs)")
small_d = _sweep_recipe("small-d", "Figure 12: at small d, next-token prediction alone generalizes for some seeds "
                        "after a long wait.",
                        "cpu (d = 6, 7 x 3 seeds; 2 cores, --workers 2: about 7 minutes) or paper (d = 11, 12; GPUs)")
partial_cot = _sweep_recipe("partial-cot", "Figure 14: long, medium and short sequences; the staircase in "
                            "pre-training, GRPO from an early and a late checkpoint with the end-to-end and the "
                            "length-penalized reward.",
                            "cpu (d = 8; 2 cores, a few minutes) or paper (d = 50; GPUs)")
star_odds = _sweep_recipe("star-odds", "Theorem 2 on the transformer: STaR with the chain-of-thought reward, the long "
                          "fraction round by round against p_{t+1} = 2 p_t / (1 + p_t).",
                          "cpu (d = 8, p_cot = 0.15, 3 seeds; 2 cores, about 3 minutes) or paper (d = 50; for a GPU)")


def reproduce_all(executor: Annotated["ExecutorConfig", Flat], out: Path = Path("runs/all"), preset: str = "cpu",
                  device: str = "auto", quiet: bool = False) -> None:
    """Every parity recipe (figs. 1, 2, 3, 6-8, 9-11, 12, 13, 14, Theorem 2 on the transformer), the theory's
    figures, and one HTML page of them all (OUT/report.html).

    Rerunning the same command resumes: finished recipes are skipped, a killed one continues.

    Args:
        executor: where runs execute and how many at once
        out: directory holding one directory per recipe, theory/ and report.html
        preset: cpu (2 cores, --workers 2: about 70 minutes) or paper (GPUs)
        device: cpu, cuda, cuda:N or auto
        quiet: no progress bars
    """
    from rlntp.devices import resolve_device
    from rlntp.errors import check, check_choice
    from rlntp.experiments import PARITY_RECIPES, THEORY, recipe_module, reproduce_all as run_all
    from rlntp.sweeps.executors import check_executor

    resolve_device(device)
    check_executor(executor)
    check_choice("preset", preset, THEORY)
    for name in PARITY_RECIPES:  # every preset must exist before the first recipe starts
        check(preset in recipe_module(name).PRESETS, f"recipe {name} has no preset {preset!r}")
    print(run_all(preset, out, device, executor, progress=not quiet))


def mult(out: Path = Path("runs/mult"), preset: str = "cpu", device: str = "auto", quiet: bool = False) -> None:
    """Multiplication (Figs. 4, 5 left, 15-18): datasets at several p_cot, pre-training, GRPO from checkpoints.

    Rerunning the same command resumes: datasets are made once, finished stages are skipped, a killed
    one continues.

    Args:
        out: directory of the recipe's datasets, runs, figures (nN/mult.png) and summary.txt
        preset: cpu (3x3, 3 seeds, 2 cores, about 24 minutes) or paper (n = 4, 5, 7, 808,000 pairs, 3 seeds; for GPUs)
        device: cpu, cuda, cuda:N or auto
        quiet: no progress bars
    """
    from rlntp.experiments.mult import PRESETS, run_mult

    print(_reproduce("mult", PRESETS, run_mult, preset, out, device, quiet))
    print(f"wrote {out / 'summary.txt'} and the figures " + ", ".join(
        str(out / f"n{n}" / "mult.png") for n in PRESETS[preset].digits))


def _llm_recipe(dataset: str, figures: str):
    """The `rlntp reproduce gsm8k|math` command (`rlntp.experiments.llm_math`)."""

    def command(out: Path = Path(f"runs/{dataset}"), preset: str = "tiny", device: str = "auto",
                quiet: bool = False) -> None:
        from rlntp.experiments.llm_math import reproduce_llm

        summary = reproduce_llm(dataset, preset, out, device, progress=not quiet)
        if summary:  # the main process's; the others of an `accelerate launch` return none
            print(summary)
            print(f"wrote {out / 'llm.png'}, {out / 'summary.txt'} and {out / 'results.json'}")

    command.__name__ = command.__qualname__ = dataset
    command.__doc__ = f"""{dataset.upper()} mixtures ({figures}): SFT at several p_cot, GRPO from several SFT epochs.

    Rerunning the same command resumes: finished stages and evaluations are skipped.

    Args:
        out: directory of the recipe's data, runs, evaluations, figure (llm.png) and summary.txt
        preset: tiny (a random tiny Llama and records made here; CPU, a few minutes; proves the wiring only) or
            paper (Llama 3.2 3B from the hub; GPUs, see the README for accelerate launches)
        device: cpu or auto (the trainers pick the GPUs accelerate gives them)
        quiet: no progress bars
    """
    return command


gsm8k = _llm_recipe("gsm8k", "Figs. 5 right, 19")
math_recipe = _llm_recipe("math", "Figs. 20, 21")


def _reproduce(name: str, presets: dict, run, preset: str, out: Path, device: str, quiet: bool) -> str:
    """Run recipe `name` at `preset` into its own directory `out` (`runs.open_recipe_dir`); its summary table."""
    from rlntp.devices import resolve_device
    from rlntp.errors import check_choice
    from rlntp.runs import open_recipe_dir

    check_choice("preset", preset, presets)
    resolve_device(device)
    with open_recipe_dir(out, name, dataclasses.asdict(presets[preset])):
        return run(presets[preset], out, device=device, progress=not quiet)


def check_positive(**values: int) -> None:
    from rlntp.errors import check

    for name, value in values.items():
        check(value >= 1, f"{name} must be >= 1, got {value}")


DESCRIPTION = ("RL after next-token prediction (Tsilivis et al., 2025). The paper's figures as recipes: "
               "rlntp reproduce --help; datasets on disk: rlntp data --help; pretrained LLMs on GSM8K/MATH: "
               "rlntp llm --help; its theory (linear autoregressive model): rlntp theory --help")
REPRODUCE = {"fig1": fig1, "fig2": fig2, "fig3": fig3, "arch": arch, "rare": rare, "small-d": small_d,
             "partial-cot": partial_cot, "fig13": fig13, "star-odds": star_odds, "mult": mult, "gsm8k": gsm8k,
             "math": math_recipe, "all": reproduce_all}
COMMANDS = {"sample": sample, "pretrain": pretrain, "posttrain": posttrain, "eval": evaluate, "plot": plot,
            "sweep": sweep, "report": report}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `rlntp` console script (`rlntp theory ...` goes to the theory's own commands)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["data"]:
        return run_commands({"mult": data_mult}, argv[1:], prog="rlntp data", description="Datasets on disk")
    if argv[:1] == ["llm"]:
        from rlntp.llm.cli import COMMANDS as LLM_COMMANDS

        return run_commands(LLM_COMMANDS, argv[1:], prog="rlntp llm",
                            description="Pretrained LLMs on GSM8K/MATH mixtures: data, SFT, GRPO, evaluation "
                                        "(pip install 'rlntp[llm]')")
    if argv[:1] == ["reproduce"]:
        _resolve_annotations()
        return run_commands(REPRODUCE, argv[1:], prog="rlntp reproduce", description="The paper's figures as recipes",
                            rerun_hint="rerun the same command to continue")
    if argv[:1] == ["theory"]:
        from rlntp.theory.cli import main as theory_main

        return theory_main(argv[1:])
    _resolve_annotations()
    run_commands(COMMANDS, argv, prog="rlntp", description=DESCRIPTION)


def run_commands(commands: dict, argv: list[str], prog: str, description: str, rerun_hint: str | None = None) -> None:
    """Parse `argv` into one of `commands` and run it; every failure of the user's input is one line.

    - tyro's parse errors (an unknown option, a value of the wrong type) are cut down from tyro's box
      to its first line, and an empty value is refused before parsing (no option takes one);
    - the plain options of a command are type-checked like config fields (`rlntp.config`);
    - a UserError prints `error: ...` and exits with its `exit_code` (2: bad input; 1: a run failed;
      130: Ctrl-C). `rerun_hint` replaces "continue with --resume" for commands that resume by rerunning.
    """
    for i, arg in enumerate(argv):
        if arg.startswith("--") and arg.endswith("="):
            _exit(f"{arg[:-1]} must not be empty", 2)
        if arg == "":
            _exit(f"{argv[i - 1] if i and argv[i - 1].startswith('--') else 'an argument'} must not be empty", 2)
    stderr, parse_errors = sys.stderr, io.StringIO()

    def checked(fn):
        @functools.wraps(fn)
        def command(*args, **kwargs):
            sys.stderr = stderr  # parsing is over: the command's own output (progress bars) goes through
            check_arguments(fn, args, kwargs)
            return fn(*args, **kwargs)
        return command

    try:
        with contextlib.redirect_stderr(parse_errors):
            tyro.extras.subcommand_cli_from_dict({name: checked(fn) for name, fn in commands.items()},
                                                 prog=prog, args=argv, description=description)
    except SystemExit as e:
        if e.code == 2 and parse_errors.getvalue():
            _exit(_first_line(parse_errors.getvalue()), 2)
        raise
    except Interrupted as e:
        _exit(str(e) if rerun_hint is None else f"interrupted at step {e.step} of {e.run_dir}; {rerun_hint}", e.exit_code)
    except UserError as e:
        _exit(str(e), e.exit_code)
    except KeyboardInterrupt:
        _exit("interrupted (no run was in progress, so there is nothing to resume)", 130)


def _exit(message: str, code: int) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


def _first_line(box: str) -> str:
    """The message of one of tyro's error boxes: its first paragraph, borders and colours removed."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", box)
    lines = [line.strip().strip("│╭╰╮╯").strip() for line in text.splitlines()]
    body = []
    for line in lines[1:]:  # lines[0] is the box's title bar
        if not line or set(line) <= set("─"):
            if body:
                break
            continue
        body.append(line)
    return " ".join(body) or "invalid command line; see --help"


def _resolve_annotations() -> None:
    """Import the config dataclasses named in the signatures only when a stage command runs.

    `rlntp theory ...` is dispatched before this, so it does not load transformers.
    """
    from rlntp.models import ModelConfig
    from rlntp.sweeps.executors import ExecutorConfig
    from rlntp.tasks import TaskConfig
    from rlntp.training.posttrain import PosttrainConfig
    from rlntp.training.pretrain import PretrainConfig

    globals().update(TaskConfig=TaskConfig, ModelConfig=ModelConfig, PretrainConfig=PretrainConfig,
                     PosttrainConfig=PosttrainConfig, ExecutorConfig=ExecutorConfig)


if __name__ == "__main__":
    main()
