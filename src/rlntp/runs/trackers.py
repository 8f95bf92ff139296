"""Experiment trackers beside metrics.jsonl: TensorBoard, Weights & Biases, MLflow (`--report-to`).

Each is an optional extra (`pip install 'rlntp[tensorboard]'`, `[wandb]`, `[mlflow]`) and writes inside the run
directory, offline, unless the user points it elsewhere:

    RUN/tensorboard/        TensorBoard event files (`tensorboard --logdir RUN`, or the sweep's directory)
    RUN/wandb/              a W&B offline run (`wandb sync RUN/wandb/offline-run-*` uploads it), WANDB_MODE
                            honoured when set
    RUN/mlruns/             an MLflow file store (`mlflow ui --backend-store-uri RUN/mlruns`); MLFLOW_TRACKING_URI
                            honoured when set

Logged: every number of each metrics.jsonl record at its step (and `samples_seen` as a metric of its own),
each length histogram (`eval/*_len_hist`, counts per length) as a histogram, the run's config as
hyper-parameters, and at the end the run's figure (`rlntp plot`) as an image. A sweep's runs are one
tracker run each, grouped by the sweep (W&B group, MLflow experiment, TensorBoard directory).
metrics.jsonl stays the record of truth: a tracker that fails to import stops the run before any work, one
that fails later is reported and dropped, never stopping training.
"""

import importlib.util
import json
import os
import sys
from pathlib import Path
from typing import Any

from rlntp.config import flatten
from rlntp.errors import check

TRACKERS = ("tensorboard", "wandb", "mlflow")
TRACKER_DIRS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}
"""Where each tracker writes inside a run directory (a run directory's own entries, `runs.dirs.RUN_ENTRIES`)."""
_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
             "mlflow": ("mlflow", "mlflow")}
"""tracker -> (the module it needs, the rlntp extra that installs it)"""


def check_trackers(names: tuple[str, ...]) -> tuple[str, ...]:
    """The trackers `names` asks for (`none` alone: none), each known and installed; ConfigError otherwise."""
    names = tuple(dict.fromkeys(names))
    if names in ((), ("none",)):
        return ()
    check("none" not in names, f"--report-to none means no tracker; it cannot go with {', '.join(names)}")
    for name in names:
        check(name in TRACKERS, f"--report-to {name}: choose from none, {', '.join(TRACKERS)}")
        module, extra = _PACKAGES[name]
        check(importlib.util.find_spec(module) is not None,
              f"--report-to {name} needs {module}: pip install 'rlntp[{extra}]'")
    return names


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _histograms(record: dict[str, Any]) -> dict[str, list[int]]:
    return {k: v for k, v in record.items() if k.endswith("_hist") and isinstance(v, list) and v}


class Trackers:
    """The trackers of one run: `log(record)` for each metrics record, `image(path)` at the end, then `close()`."""

    def __init__(self, names: tuple[str, ...], run_dir: Path, config: dict[str, Any], group: str | None = None):
        self.run_dir, self.names = Path(run_dir), check_trackers(names)
        self.config, self.group = config, group or "rlntp"
        self._open: dict[str, Any] = {}
        for name in self.names:
            self._open[name] = getattr(self, f"_open_{name}")()

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _each(self, what: str, *args) -> None:
        for name in list(self._open):
            try:
                getattr(self, f"_{what}_{name}")(self._open[name], *args)
            except Exception as e:  # a tracker never stops training: metrics.jsonl has the record
                print(f"warning: --report-to {name} failed ({type(e).__name__}: {e}); it is dropped for this run",
                      file=sys.stderr)
                self._open.pop(name)

    def log(self, record: dict[str, Any]) -> None:
        """One metrics record (an evaluation, or an RL step's statistics) at its step."""
        self._each("log", record)

    def image(self, path: Path, tag: str = "plot") -> None:
        """A figure (PNG) of the run."""
        self._each("image", Path(path), tag)

    def close(self) -> None:
        self._each("close")
        self._open.clear()

    # TensorBoard
    def _open_tensorboard(self):
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(self.run_dir / TRACKER_DIRS["tensorboard"]))
        writer.add_text("config", "```\n" + json.dumps(self.config, indent=2) + "\n```")
        return writer

    def _log_tensorboard(self, writer, record: dict[str, Any]) -> None:
        step = record["step"]
        for key, value in _numbers(record).items():
            writer.add_scalar(key, value, step)
        for key, counts in _histograms(record).items():
            lengths = range(len(counts))
            writer.add_histogram_raw(key, min=0, max=len(counts) - 1, num=sum(counts),
                                     sum=sum(i * c for i, c in zip(lengths, counts)),
                                     sum_squares=sum(i * i * c for i, c in zip(lengths, counts)),
                                     bucket_limits=[i + 0.5 for i in lengths], bucket_counts=counts, global_step=step)
        writer.flush()

    def _image_tensorboard(self, writer, path: Path, tag: str) -> None:
        import numpy as np
        from PIL import Image

        writer.add_image(tag, np.asarray(Image.open(path).convert("RGB")), dataformats="HWC")
        writer.flush()

    def _close_tensorboard(self, writer) -> None:
        writer.close()

    # Weights & Biases (offline unless WANDB_MODE says otherwise)
    def _open_wandb(self):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        return wandb.init(mode=os.environ.get("WANDB_MODE", "offline"), dir=str(self.run_dir),
                          project=os.environ.get("WANDB_PROJECT", "rlntp"), group=self.group, name=self.run_dir.name,
                          config=flatten(self.config), reinit="create_new")

    def _log_wandb(self, run, record: dict[str, Any]) -> None:
        import numpy as np
        import wandb

        values: dict[str, Any] = dict(_numbers(record))
        for key, counts in _histograms(record).items():
            values[key] = wandb.Histogram(np_histogram=(np.asarray(counts), np.arange(len(counts) + 1) - 0.5))
        run.log(values, step=record["step"])

    def _image_wandb(self, run, path: Path, tag: str) -> None:
        import wandb

        run.log({tag: wandb.Image(str(path))})

    def _close_wandb(self, run) -> None:
        run.finish()

    # MLflow (a file store in the run directory unless MLFLOW_TRACKING_URI says otherwise)
    def _open_mlflow(self):
        from mlflow.tracking import MlflowClient

        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if not uri:  # MLflow 3 keeps its file store in maintenance, behind this switch; it needs no server or database
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
            uri = (self.run_dir / TRACKER_DIRS["mlflow"]).resolve().as_uri()
        client = MlflowClient(uri)
        experiment = client.get_experiment_by_name(self.group)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(self.group)
        run = client.create_run(experiment_id, run_name=self.run_dir.name)
        for key, value in flatten(self.config).items():
            client.log_param(run.info.run_id, key, json.dumps(value)[:6000])
        return client, run.info.run_id

    def _log_mlflow(self, opened, record: dict[str, Any]) -> None:
        client, run_id = opened
        for key, value in _numbers(record).items():
            client.log_metric(run_id, key, value, step=record["step"])
        for key, counts in _histograms(record).items():
            client.log_dict(run_id, {"length": list(range(len(counts))), "count": counts},
                            f"histograms/{key.replace('/', '_')}/step_{record['step']}.json")

    def _image_mlflow(self, opened, path: Path, tag: str) -> None:
        client, run_id = opened
        client.log_artifact(run_id, str(path), artifact_path="figures")

    def _close_mlflow(self, opened) -> None:
        client, run_id = opened
        client.set_terminated(run_id)
