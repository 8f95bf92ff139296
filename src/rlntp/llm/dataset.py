"""`rlntp llm data`: GSM8K or MATH records -> the SFT and RL halves of a long/short mixture, on disk.

    DIR/data/{sft,rl,test}-00000-of-00001.parquet   prompt, completion, answer, long, row
    DIR/manifest.json                               how they were made, and the rows left out

The file names are the hub's layout, so `datasets.load_dataset(DIR)` loads the three splits by name;
`prompt` and `completion` are the columns TRL's trainers read (strings for GSM8K, chat messages for MATH).
"""

import json
import math
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rlntp.config import Config
from rlntp.errors import ConfigError, check
from rlntp.files import atomic_write_text, check_new_dir, check_not_lfs_pointer, read_text_file
from rlntp.tasks.math_text import Dataset, Mixture, check_columns, dataset_format, make_mixture

SPLITS = ("sft", "rl", "test")
MANIFEST = "manifest.json"


def split_path(data_dir: Path, split: str) -> Path:
    """Where split `split` of a dataset directory is stored (the hub's file naming)."""
    return Path(data_dir) / "data" / f"{split}-00000-of-00001.parquet"


@dataclass(frozen=True)
class LLMDataConfig(Config):
    """Which records, and how the mixture is drawn from them."""

    dataset: str = "gsm8k"
    """gsm8k or math: how records are split into chain of thought and answer"""
    source: str = "openai/gsm8k"
    """a Hugging Face hub dataset (openai/gsm8k; for MATH a one-config mirror such as
    DigitalLearningGmbH/MATH-lighteval, or EleutherAI/hendrycks_math with --config-name SUBJECT) or a local
    .jsonl / .json / .parquet file with the same columns"""
    config_name: str | None = None
    """the hub dataset's configuration (openai/gsm8k: main, the default for it)"""
    test_source: str | None = None
    """a local file of test records; default: the hub dataset's test split (none for a local --source)"""
    p_cot: float = 0.25
    """probability that a training target keeps its chain of thought"""
    seed: int = 0
    """seed of the halves and of the long/short decisions"""

    def check(self) -> None:
        dataset_format(self.dataset)
        check(0.0 <= self.p_cot <= 1.0, f"p_cot must be in [0, 1], got {self.p_cot}")

    @property
    def format(self) -> Dataset:
        return dataset_format(self.dataset)


MAX_RECORD_MB = 256.0
"""The largest local record file read unless the user raises it (--max-record-mb): records are held in memory as
Python objects, several times the file's size, and GSM8K's and MATH's training sets are 4 and 10 MB."""


def check_record_file(path: Path, max_mb: float) -> None:
    """ConfigError in one line if the local record file `path` is larger than `max_mb` megabytes (10^6 bytes)."""
    size = Path(path).stat().st_size
    check(size <= max_mb * 1e6, f"{path} is {size / 1e6:,.1f} MB, over the {max_mb:g} MB limit on a record file (its "
          f"records are held in memory); pass --max-record-mb {math.ceil(size / 1e6)} to read it anyway")


def load_records(source: str, split: str, config_name: str | None, fmt: Dataset,
                 max_mb: float | None = MAX_RECORD_MB) -> list[dict[str, Any]]:
    """The records of `source` (a local file, or a hub dataset's `split`) as dicts; their columns and the types of
    the question and solution fields checked (one line naming the file and record otherwise). A local file over
    `max_mb` MB is refused before it is read (None: the caller checked it); a hub name is asked for once first
    (`llm.common.check_on_hub`), so without network it fails in seconds, not after the retries of a download."""
    path = Path(source)
    if path.exists():
        check(path.is_file() and path.suffix in LOCAL_FORMATS,
              f"{source} is not a {', '.join(LOCAL_FORMATS)} file of {fmt.name} records")
        if max_mb is not None:
            check_record_file(path, max_mb)
        records = _read_local(path)
    else:
        import datasets

        from rlntp.llm.common import check_on_hub

        check(path.suffix not in LOCAL_FORMATS, f"no such file: {source}")
        check_on_hub(source, "dataset", f"without network access, download it elsewhere and pass a local file with "
                                        f"columns {fmt.question!r}, {fmt.solution!r}: --source path/to/{split}.jsonl")
        if config_name is None and source == "openai/gsm8k":
            config_name = "main"
        try:
            loaded = datasets.load_dataset(source, config_name, split=split)
        except (ConnectionError, FileNotFoundError, ValueError, OSError) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ConfigError(f"cannot load {source!r} ({split}) from the Hugging Face hub: {reason}; without network "
                              f"access, download it elsewhere and pass a local file with columns "
                              f"{fmt.question!r}, {fmt.solution!r}: --source path/to/{split}.jsonl") from None
        records = loaded.to_list()
    check(len(records) > 0, f"{source} holds no records")
    check_columns(fmt, sorted({key for record in records for key in record}), source)
    for number, record in enumerate(records, 1):
        for name in (fmt.question, fmt.solution):
            value = record.get(name)
            check(isinstance(value, str), f"{source}, record {number}: {name!r} is "
                  f"{'missing' if value is None else type(value).__name__}, not text")
    return records


LOCAL_FORMATS = (".jsonl", ".json", ".parquet")


def _read_local(path: Path) -> list[dict[str, Any]]:
    """The records of a local JSON Lines, JSON (a list of objects) or Parquet file."""
    if path.suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        check_not_lfs_pointer(path)
        try:
            return pq.read_table(path).to_pylist()
        except (pa.ArrowException, OSError) as e:
            raise ConfigError(f"{path} is not a readable Parquet file ({str(e).splitlines()[0]})") from None
    text = read_text_file(path)
    if path.suffix == ".json":
        try:
            records = json.loads(text)
        except ValueError as e:
            raise ConfigError(f"{path} is not valid JSON ({e})") from None
        check(isinstance(records, list) and all(isinstance(r, dict) for r in records),
              f"{path} must hold a JSON list of records (objects); for one record per line, name it .jsonl")
        return records
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as e:
            raise ConfigError(f"{path}, line {number}: not a JSON record ({e})") from None
        check(isinstance(record, dict), f"{path}, line {number}: not a JSON object")
        records.append(record)
    return records


def make_dataset(config: LLMDataConfig, out: Path, max_record_mb: float | None = MAX_RECORD_MB) -> dict[str, Any]:
    """Write the mixture's halves and the test split to `out` (a new directory); returns the manifest. The records
    are read and checked (sizes against `max_record_mb`, usable counts: `make_mixture`) before anything is written."""
    import datasets

    check_new_dir(out, "dataset directory")
    datasets.disable_progress_bars()  # a few seconds of work; their bars would bury the command's one-line errors
    fmt = config.format
    local = Path(config.source).exists()
    for name in (config.source, config.test_source):
        if max_record_mb is not None and name is not None and Path(name).is_file():
            check_record_file(Path(name), max_record_mb)  # both before either is read
    train = load_records(config.source, "train", config.config_name, fmt, None)
    if config.test_source is not None:
        test = load_records(config.test_source, "test", None, fmt, None)
    elif local:
        test = []
    else:
        test = load_records(config.source, "test", config.config_name, fmt)
    mixture = make_mixture(fmt, train, test, config.p_cot, config.seed)
    out.parent.mkdir(parents=True, exist_ok=True)
    # written beside `out` and renamed to it when complete: a killed run leaves no half-made dataset there, and a
    # failed or interrupted one removes its partial directory
    partial = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.partial-"))
    try:
        _write_dataset(partial, mixture, config)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    if out.is_dir():
        out.rmdir()  # empty (check_new_dir)
    partial.rename(out)
    return json.loads((out / MANIFEST).read_text())


def _write_dataset(partial: Path, mixture: Mixture, config: LLMDataConfig) -> None:
    """The splits and the manifest of `mixture` into the directory `partial`."""
    import datasets

    (partial / "data").mkdir()
    rows = {"sft": mixture.sft, "rl": mixture.rl, "test": mixture.test}
    for split in SPLITS:
        if rows[split]:
            datasets.Dataset.from_list(rows[split]).to_parquet(str(split_path(partial, split)))
    manifest = {
        "config": asdict(config),
        "rows": {split: len(rows[split]) for split in SPLITS},
        "long": {split: sum(r["long"] for r in rows[split]) for split in ("sft", "rl")},
        "unsplittable": mixture.unsplittable,
        "datasets_version": datasets.__version__,
    }
    atomic_write_text(partial / MANIFEST, json.dumps(manifest, indent=2) + "\n")


def read_split(data_dir: Path, split: str):
    """Split `split` (sft, rl or test) of a directory written by `make_data`, as a `datasets.Dataset`."""
    import datasets

    path = split_path(data_dir, split)
    check((Path(data_dir) / MANIFEST).is_file(), f"{data_dir} is not a dataset made by `rlntp llm data` (no {MANIFEST})")
    check(path.is_file(), f"{data_dir} has no {split} split; make it with `rlntp llm data`"
          + (" --test-source FILE" if split == "test" else ""))
    return datasets.load_dataset("parquet", data_files=str(path), split="train")


def read_manifest(data_dir: Path) -> dict[str, Any]:
    """The manifest of a dataset directory written by `make_data`."""
    path = Path(data_dir) / MANIFEST
    check(path.is_file(), f"{data_dir} is not a dataset made by `rlntp llm data` (no {MANIFEST})")
    return json.loads(path.read_text())
