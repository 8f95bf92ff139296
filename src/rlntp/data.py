"""Where a stage's sequences come from: fresh samples of the task, or a dataset on disk (and how one is made).

A dataset directory (written by `rlntp data ...`) holds

    manifest.json                       how it was made: task, options, row counts, file checksums
    train.parquet, valid.parquet, test.parquet
                                        one row per sequence: `text` (the task's text format),
                                        `input_ids` (token ids, EOS included), `long` (has the
                                        chain of thought), and the task's own columns (a, b, ...)
    tokenizer.json, tokenizer_config.json
                                        the word-level tokenizer (`AutoTokenizer.from_pretrained`)

`datasets.load_dataset("parquet", data_dir=DIR)` and pandas read the splits as they are.
"""

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlntp.devices import seeded_generator
from rlntp.errors import ConfigError, check
from rlntp.files import check_new_dir, read_text_file, sha256_file
from rlntp.memory import check_fits
from rlntp.tasks.base import LONG, SHORT, Sequences, Task
from rlntp.tasks.multiplication import MultiplicationTask, draw_pairs
from rlntp.tasks.parity import ParityTask
from rlntp.tasks.trust import task_change, task_identity

MANIFEST = "manifest.json"
SPLITS = ("train", "valid", "test")
FORMAT = "rlntp-dataset"


def write_dataset(out: Path, task: Task, splits: dict[str, tuple[Sequences, dict[str, np.ndarray]]],
                  manifest: dict[str, Any]) -> Path:
    """Write a dataset directory atomically (a temporary directory renamed into place).

    `splits` maps each split name to its sequences and extra columns (e.g. the operands). The same
    inputs give the same bytes.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(out)
    check_new_dir(out, "dataset")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        files = {}
        for name, (seqs, extra) in splits.items():
            ends = (task.prompt_len + seqs.lengths + 1).numpy()  # up to and including EOS
            keep = torch.arange(seqs.tokens.shape[1])[None, :] < torch.from_numpy(ends)[:, None]
            offsets = np.concatenate([[0], np.cumsum(ends)]).astype(np.int32)
            kept = seqs.tokens[keep]
            low, high = (int(kept.min()), int(kept.max())) if len(kept) else (0, 0)  # an empty split holds none
            check(0 <= low and high < task.vocab_size,
                  f"the {name} split of task {task.name} has token ids outside its vocabulary [0, {task.vocab_size}) "
                  f"(from {low} to {high}): its sample returned them")
            ids = pa.ListArray.from_arrays(pa.array(offsets), pa.array(kept.numpy().astype(np.uint8)))
            rows = seqs.tokens.tolist()
            table = pa.table({"text": [task.to_text(row[:end]) for row, end in zip(rows, ends.tolist())],
                              "input_ids": ids, "long": (seqs.kinds == LONG).numpy(), **extra})
            path = tmp / f"{name}.parquet"
            pq.write_table(table, path, compression="zstd")
            files[name] = {"file": path.name, "rows": table.num_rows, "long": int((seqs.kinds == LONG).sum()),
                           "sha256": sha256_file(path)}
        task.tokenizer().save_pretrained(tmp)
        manifest = {"format": FORMAT, "version": 1, **manifest, "task_identity": task_identity(task), "splits": files}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        for path in tmp.iterdir():
            with open(path, "rb") as f:
                os.fsync(f.fileno())
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the dataset is as readable as any directory
        if out.exists():
            out.rmdir()  # empty, checked above
        os.replace(tmp, out)
    except OSError as e:
        raise ConfigError(f"could not write the dataset {out} ({e}); was it written by another process meanwhile?") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # ours (a unique name); gone already after the rename
    return out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest of a dataset directory; ConfigError if `path` is not one."""
    file = Path(path) / MANIFEST
    try:
        manifest = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not an rlntp dataset (no readable {MANIFEST}); make one with `rlntp data`") from e
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ConfigError(f"{file} is not an rlntp dataset manifest; make one with `rlntp data`")
    return manifest


@dataclass(frozen=True)
class Dataset:
    """The splits of a dataset directory as padded token tensors (on the CPU)."""

    train: Sequences
    test: Sequences
    manifest: dict[str, Any]
    task_change: dict[str, Any] | None = None
    """made by another version of the task, allowed (`runs.task_record.record_task` takes it); None: the same task"""


def load_dataset(path: Path, task: Task, allow_task_change: bool = False) -> Dataset:
    """Read a dataset directory made for `task`, checking every split file against the manifest's checksum, and the
    task's identity against the manifest's (`tasks.trust`; another one is refused unless `allow_task_change`)."""
    import pyarrow.parquet as pq

    path = Path(path)
    manifest = read_manifest(path)
    made = {k: manifest.get(k) for k in task.params}
    if made != task.params:
        raise ConfigError(f"dataset {path} was made for " + ", ".join(f"{k} = {v}" for k, v in made.items())
                          + "; the run asks for " + ", ".join(f"{k} = {v}" for k, v in task.params.items()))
    change = task_change(manifest.get("task_identity"), task_identity(task), f"dataset {path}", allow_task_change)
    splits = {}
    for name in ("train", "test"):
        try:
            entry = manifest["splits"][name]
            file, rows, checksum = path / entry["file"], entry["rows"], entry["sha256"]
        except (KeyError, TypeError) as e:
            raise ConfigError(f"{path / MANIFEST} does not describe a {name} split ({e}); make the dataset again") from e
        if not rows:
            raise ConfigError(f"dataset {path} has an empty {name} split")
        if not file.is_file() or sha256_file(file) != checksum:
            raise ConfigError(f"{file} is missing or damaged (its checksum differs from {MANIFEST}); "
                              "make the dataset again")
        table = pq.read_table(file, columns=["input_ids", "long"])
        ids = table.column("input_ids").combine_chunks()
        offsets = ids.offsets.to_numpy().astype(np.int64)
        flat = torch.from_numpy(ids.values.to_numpy().astype(np.int64))
        lengths = torch.from_numpy(np.diff(offsets))
        if len(flat) and int(flat.max()) >= task.vocab_size:
            raise ConfigError(f"{file} has token id {int(flat.max())}, outside the vocabulary of task {task.name} "
                              f"({task.vocab_size} tokens): it was made by another task; make the dataset again")
        if int(lengths.max()) > task.context_len:
            raise ConfigError(f"{file} has sequences longer than the task's context ({task.context_len} tokens)")
        tokens = torch.full((len(lengths), task.context_len), task.eos_id, dtype=torch.long)
        row = torch.repeat_interleave(torch.arange(len(lengths)), lengths)
        column = torch.arange(len(flat)) - torch.from_numpy(offsets[:-1]).repeat_interleave(lengths)
        tokens[row, column] = flat
        long = torch.from_numpy(table.column("long").to_numpy(zero_copy_only=False))
        prompts, outputs = tokens[:, : task.prompt_len], tokens[:, task.prompt_len :]
        splits[name] = task.sequences(prompts, outputs, torch.where(long, LONG, SHORT))
    return Dataset(train=splits["train"], test=splits["test"], manifest=manifest, task_change=change)


class OnlineData:
    """Fresh samples of the task: a new batch every step, fresh prompts for RL and for evaluation."""

    test_prompts = None
    train_size = None
    task_change = None

    def __init__(self, task: Task, seed: int, device: torch.device):
        self.task = task
        self.generators = {"data": seeded_generator(device, seed)}
        """random state a checkpoint must keep for a resumed run to draw the same batches"""

    @property
    def distinct_inputs(self) -> int | None:
        """The task's (`Task.distinct_inputs`)."""
        return self.task.distinct_inputs

    def train_batch(self, step: int, batch_size: int) -> Sequences:
        return self.task.sample(batch_size, self.generators["data"])

    def rl_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.task.sample_prompts(n, generator)


class FixedData:
    """A dataset: epochs over its train split, each in a seeded order; its test split for evaluation.

    The batch of a step is a function of (seed, step) alone, so a resumed run needs no data state.
    RL prompts are drawn uniformly from the train split.
    """

    generators: dict[str, torch.Generator] = {}

    def __init__(self, task: Task, dataset: Dataset, seed: int, device: torch.device):
        self.train = Sequences(*(t.to(device) for t in vars(dataset.train).values()))
        self.train_prompts = self.train.tokens[:, : task.prompt_len]
        self.test_prompts = dataset.test.tokens[:, : task.prompt_len].to(device)
        self.train_size = len(self.train.tokens)
        self.task_change = dataset.task_change
        """the allowed change of task since the dataset was made (None: none)"""
        self.seed = seed
        self._order: tuple[int, torch.Tensor] | None = None

    @property
    def distinct_inputs(self) -> int:
        """The distinct prompts of the train split (one sort of its prompts: a split may repeat a prompt, a
        sampled one or one read from text)."""
        return len(torch.unique(self.train_prompts, dim=0))

    def epoch_order(self, epoch: int) -> torch.Tensor:
        """The permutation of the train split used in `epoch` (drawn on the CPU: the same on every device)."""
        if self._order is None or self._order[0] != epoch:
            g = seeded_generator(torch.device("cpu"), self.seed, epoch, 5)
            self._order = (epoch, torch.randperm(self.train_size, generator=g).to(self.train.tokens.device))
        return self._order[1]

    def train_batch(self, step: int, batch_size: int) -> Sequences:
        """Rows step * batch_size .. of the endless sequence of epochs (slices of the epochs' orders, on the device:
        nothing is copied to it or read from it but the order of each new epoch)."""
        start, end, n = step * batch_size, (step + 1) * batch_size, self.train_size
        rows = torch.cat([self.epoch_order(e)[max(start - e * n, 0):min(end - e * n, n)]
                          for e in range(start // n, (end - 1) // n + 1)])
        return Sequences(*(t[rows] for t in vars(self.train).values()))

    def rl_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        rows = torch.randint(0, self.train_size, (n,), generator=generator, device=generator.device)
        return self.train_prompts[rows.to(self.train_prompts.device)]


def read_mult_text(task: MultiplicationTask, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(pairs (k, 2), long (k,)) of a public text file, one sequence per line, each checked byte for byte.

    ConfigError naming the file and line for anything that is not exactly this task's format, with the
    cause where it is one a text editor hides (a byte-order mark, Windows line ends, trailing spaces).
    """
    text = read_text_file(path)
    if text.startswith("\ufeff"):
        raise ConfigError(f"{path} starts with a byte-order mark (U+FEFF); save it as UTF-8 without one")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise ConfigError(f"{path} has no lines")
    parsed = []
    for number, line in enumerate(lines, 1):
        if line.endswith("\r"):
            raise ConfigError(f"{path} line {number} ends in a carriage return (Windows line ends); convert the file "
                              "to Unix line ends (e.g. dos2unix)")
        if line != line.rstrip():
            raise ConfigError(f"{path} line {number} ends in {len(line) - len(line.rstrip())} space(s) the format "
                              "does not have; remove trailing whitespace")
        try:
            parsed.append(task.parse_prompt(line))
        except ConfigError as e:
            raise ConfigError(f"{path} line {number}: {e}") from None
    pairs = np.array([(a, b) for a, b, _ in parsed], dtype=np.int64)
    long = np.array([is_long for _, _, is_long in parsed])
    seqs = task.encode(torch.from_numpy(pairs[:, 0]), torch.from_numpy(pairs[:, 1]), torch.from_numpy(long))
    for number, (line, row) in enumerate(zip(lines, seqs.tokens.tolist()), 1):
        if line != task.to_text(row):
            raise ConfigError(f"{path} line {number}: differs from the {'long' if long[number - 1] else 'short'} "
                              f"line of {pairs[number - 1, 0]} x {pairs[number - 1, 1]}: {task.to_text(row)!r}")
    return pairs, long


def make_mult_dataset(out: Path, digits: int, p_cot: float, sizes: dict[str, int], seed: int,
                 from_text: dict[str, Path] | None = None) -> Path:
    """Write a multiplication dataset: distinct operand pairs, no pair in two splits (`rlntp data mult`).

    Splits given in `from_text` come from public text files; the others are drawn at random (test
    first, then valid, then train, so the test pairs do not depend on the train size), avoiding the
    imported pairs. Each training row keeps its chain of thought with probability p_cot (seeded,
    one draw per row, the same draws for generated and imported rows); valid and test rows are long.
    """
    task = MultiplicationTask(digits, p_cot)
    from_text = from_text or {}
    for split in from_text:
        check(split in sizes, f"unknown split {split!r} in --from-text; use train=FILE, valid=FILE or test=FILE")
    for name, size in sizes.items():
        check(size >= 0, f"{name} must be >= 0, got {size}")
    check_new_dir(Path(out), "dataset")
    rows = sum(sizes.values())  # about 64 bytes per token while encoding: tokens, their text, Python lists
    check_fits(rows * task.context_len * 64, "cpu", f"a dataset of {rows:,} rows",
               "ask for fewer pairs")
    imported = {split: read_mult_text(task, path) for split, path in from_text.items()}
    low, high = task.operand_range
    keys = {split: pairs[:, 0] * high + pairs[:, 1] for split, (pairs, _) in imported.items()}
    names = list(keys)
    for i, first in enumerate(names):
        for second in names[i + 1 :]:
            shared = np.intersect1d(keys[first], keys[second])
            if len(shared):
                raise ConfigError(f"{len(shared)} pairs are both in {first} ({from_text[first]}) and in {second} "
                                  f"({from_text[second]}), e.g. {shared[0] // high} x {shared[0] % high}")
    generated = [s for s in ("test", "valid", "train") if s not in imported]
    wanted = sum(sizes[s] for s in generated)
    taken = np.concatenate(list(keys.values())) if keys else np.zeros(0, dtype=np.int64)
    pool = draw_pairs(digits, wanted + len(np.unique(taken)), seed)
    pool = pool[~np.isin(pool[:, 0] * high + pool[:, 1], taken)]
    check(len(pool) >= wanted, f"only {len(pool):,} {digits}x{digits} pairs are left besides the imported ones; "
                               f"asked for {wanted:,}")
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = dict(imported)
    start = 0
    for split in generated:
        columns[split] = (pool[start : start + sizes[split]], np.ones(sizes[split], dtype=bool))
        start += sizes[split]
    pairs, long = columns["train"]
    keep_cot = np.random.default_rng([seed, digits, 11]).random(len(pairs)) < p_cot
    columns["train"] = (pairs, long & keep_cot)

    splits = {}
    for split in ("train", "valid", "test"):
        pairs, long = columns[split]
        a, b = torch.from_numpy(pairs[:, 0].copy()), torch.from_numpy(pairs[:, 1].copy())
        splits[split] = (task.encode(a, b, torch.from_numpy(long)), {"a": pairs[:, 0], "b": pairs[:, 1]})
    manifest = task.params | {"seed": seed,
                "source": {s: (str(from_text[s]) if s in from_text else "generated") for s in ("train", "valid", "test")},
                "duplicate_pairs": {s: int(len(k) - len(np.unique(k))) for s, k in keys.items()}}
    return write_dataset(out, task, splits, manifest)


def make_sampled_dataset(out: Path, task: Task, sizes: dict[str, int], seed: int) -> Path:
    """Write a dataset of fresh samples of any task's mixture (`rlntp data sample`): train, valid and test rows
    drawn in that order from one seeded generator, each long with probability p_cot. Prompts are not deduplicated
    across splits (a task of your own defines its own input space); evaluation reads only the test prompts."""
    for name, size in sizes.items():
        check(size >= 1, f"{name} must be >= 1, got {size}")
    check_new_dir(Path(out), "dataset")
    check_fits(sum(sizes.values()) * task.context_len * 64, "cpu", f"a dataset of {sum(sizes.values()):,} rows",
               "ask for fewer rows")
    generator = seeded_generator(torch.device("cpu"), seed, 13)
    splits = {split: (task.sample(size, generator), {}) for split, size in sizes.items()}
    return write_dataset(out, task, splits, task.params | {"seed": seed, "source": "sampled"})


def make_parity_dataset(out: Path, task: ParityTask, held_out: float, copies: int, seed: int) -> Path:
    """Write a parity dataset whose test inputs are never trained on (`rlntp data parity`).

    The 2^d inputs in a seeded order: the first round(held_out * 2^d) of them are the test split, each once
    (evaluation reads only their prompts), and the rest the train split, each `copies` times with its own
    draw from the task's mixture (long with probability p_cot, medium p_medium, short otherwise), so that epochs over
    it are the task's mixture restricted to the train inputs. The valid split is empty. Same options, same bytes.
    """
    check(isinstance(task, ParityTask), f"held-out inputs are enumerated for parity; got task {task.name!r}")
    check(task.d <= 20, f"d must be at most 20 to enumerate every input (2^d rows at least), got {task.d}")
    check(0.0 < held_out < 1.0, f"held_out is the fraction of inputs kept for testing, in (0, 1), got {held_out}")
    check(copies >= 1, f"copies must be >= 1, got {copies}")
    inputs = 2**task.d
    tested = round(held_out * inputs)
    check(1 <= tested < inputs, f"held_out {held_out} of the {inputs:,} inputs leaves {tested} to test and "
                                f"{inputs - tested:,} to train; both need at least one: change --held-out")
    rows = (inputs - tested) * copies + tested
    check_fits(rows * task.context_len * 64, "cpu", f"a dataset of {rows:,} rows", "ask for fewer --copies")
    rng = np.random.default_rng([seed, task.d, 17])
    order = torch.from_numpy(rng.permutation(inputs))
    bits = (order[:, None] >> torch.arange(task.d)) & 1
    train_x = bits[tested:].repeat_interleave(copies, dim=0)
    test_x = bits[:tested]
    splits = {
        "train": (task.mixture(train_x, torch.from_numpy(rng.random(len(train_x)))), {}),
        "valid": (task.mixture(bits[:0], torch.zeros(0)), {}),
        "test": (task.mixture(test_x, torch.zeros(tested)), {}),
    }
    manifest = task.params | {"seed": seed, "source": "enumerated", "held_out": held_out, "copies": copies,
                              "inputs": {"train": inputs - tested, "test": tested}}
    return write_dataset(out, task, splits, manifest)


def make_data(task: Task, data: str | None, seed: int, device: torch.device,
              allow_task_change: bool = False) -> OnlineData | FixedData:
    """The data source of a stage: the dataset at `data` (`load_dataset`), or fresh samples of `task` (None)."""
    if data is None:
        return OnlineData(task, seed, device)
    return FixedData(task, load_dataset(Path(data), task, allow_task_change), seed, device)
