"""`rlntp data ...`: task datasets on disk (multiplication, paper App. B.2; parity with held-out inputs; fresh
samples of any task)."""

from pathlib import Path
from typing import Annotated

from rlntp.cli.parsing import Flat
from rlntp.tasks import TaskConfig

DESCRIPTION = ("Datasets on disk: n x n multiplication pairs, generated or imported from the public text files, "
               "parity with held-out inputs, or fresh samples of any task's mixture")


def mult(digits: int = 4, p_cot: float = 0.25, train: int = 808_000, valid: int = 1000, test: int = 1000,
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
    from rlntp.data import make_mult_dataset
    from rlntp.errors import check

    files = {}
    for item in from_text:
        split, sep, path = item.partition("=")
        check(bool(sep) and bool(path), f"--from-text takes SPLIT=FILE (train, valid or test), got {item!r}")
        check(split not in files, f"--from-text names the {split} split twice ({files.get(split)} and {path}); "
              "give one file per split")
        files[split] = Path(path)
    make_mult_dataset(out, digits, p_cot, {"train": train, "valid": valid, "test": test}, seed, files)
    print(f"wrote {out}")


def sample(task: Annotated[TaskConfig, Flat], train: int = 100_000, valid: int = 1000, test: int = 1000,
           seed: int = 0, out: Path = Path("data/sampled")) -> None:
    """Make a dataset of fresh samples of a task's mixture (parity, mult or your own, docs/tasks.md), for training on
    a fixed set: `--data OUT` in pretrain, posttrain and sweeps. Same options, same bytes.

    Args:
        task: the mixture distribution
        train: training rows
        valid: validation rows
        test: test rows (evaluation reads their prompts)
        seed: seed of the rows
        out: the dataset directory to create (must not exist or be empty)
    """
    from rlntp.data import make_sampled_dataset
    from rlntp.errors import check
    from rlntp.tasks import make_task

    check(task.data is None, "--data names a dataset to read; `rlntp data sample` makes one at --out")
    make_sampled_dataset(out, make_task(task), {"train": train, "valid": valid, "test": test}, seed)
    print(f"wrote {out}")


def parity(task: Annotated[TaskConfig, Flat], held_out: float = 0.25, copies: int = 64, seed: int = 0,
           out: Path = Path("data/parity")) -> None:
    """Make a parity dataset with held-out inputs: every one of the 2^d inputs in exactly one split, so the test split's
    accuracy is on inputs pre-training never saw (at small d, where fresh samples repeat every input, it tells
    learning parity from memorising a table). Train on it with `--data OUT`. Same options, same bytes.

    Args:
        task: the parity mixture (--d, --p-cot, --p-medium)
        held_out: fraction of the 2^d inputs kept for the test split
        copies: rows per train input, each with its own draw from the mixture
        seed: seed of which inputs are held out and of the rows' draws
        out: the dataset directory to create (must not exist or be empty)
    """
    from rlntp.data import make_parity_dataset
    from rlntp.errors import check
    from rlntp.tasks import make_task

    check(task.task == "parity", f"held-out inputs are enumerated for parity; got --task {task.task}")
    check(task.data is None, "--data names a dataset to read; `rlntp data parity` makes one at --out")
    make_parity_dataset(out, make_task(task), held_out, copies, seed)
    print(f"wrote {out}")


def commands() -> dict:
    return {"mult": mult, "sample": sample, "parity": parity}
