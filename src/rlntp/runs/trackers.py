"""Experiment trackers beside metrics.jsonl: TensorBoard, Weights & Biases, MLflow (`--report-to`).

Each is an optional extra (`pip install 'rlntp[tensorboard]'`, `[wandb]`, `[mlflow]`) and writes inside the run
directory, offline, unless the user's own settings point it elsewhere:

    RUN/tensorboard/        TensorBoard event files (`tensorboard --logdir RUN`, or the sweep's directory)
    RUN/wandb/              a W&B offline run (`wandb sync RUN/wandb/offline-run-*` uploads it); WANDB_MODE,
                            WANDB_DIR, WANDB_PROJECT, WANDB_ENTITY, WANDB_RUN_GROUP, WANDB_NAME honoured when set
    RUN/mlruns/             an MLflow file store (`MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri
                            RUN/mlruns`); MLFLOW_TRACKING_URI, MLFLOW_EXPERIMENT_NAME and MLFLOW_EXPERIMENT_ID
                            honoured when set (one store for a whole sweep: one MLflow run per rlntp run)
    RUN/trackers.json       the MLflow run (store and run id) and the W&B run id this run writes to

Logged: every number of each metrics.jsonl record at its step (and `samples_seen` as a metric of its own),
each length histogram (`eval/*_len_hist`, counts per length) as a histogram, the run's config as
hyper-parameters, and at the end the run's figure (`rlntp plot`) as an image. A sweep's runs are one
tracker run each, grouped by the sweep (W&B group, MLflow experiment, TensorBoard directory).

A resumed run continues its tracker runs (trackers.json: the same MLflow run, W&B's `resume`): steps a tracker
run already holds are not logged again, and steps of metrics.jsonl it lacks are logged; TensorBoard's new event
file starts with a restart marker at its first step, so its reader drops the earlier files' steps from there on
(those after the last checkpoint, trained and logged again). metrics.jsonl stays the
record of truth: a tracker that is not installed stops the run before any work; one that fails to start or to
log (a store it cannot use, a missing key, a library that breaks) is reported in one line on stderr and
dropped, never stopping training.
"""

import fcntl
import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from rlntp.config import flatten
from rlntp.errors import check
from rlntp.files import atomic_write_text

TRACKERS = ("tensorboard", "wandb", "mlflow")
TRACKER_DIRS = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlruns"}
"""Where each tracker writes inside a run directory (a run directory's own entries, `runs.dirs.RUN_ENTRIES`)."""
TRACKER_STATE = "trackers.json"
"""The tracker runs a run directory writes to and the last step each holds (a run directory's own entry)."""
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


def is_file_store(uri: str) -> bool:
    """Whether the MLflow tracking URI `uri` is a local file store (a `file:` URI or a plain path)."""
    return urlparse(uri).scheme in ("", "file") or (len(uri) > 1 and uri[1] == ":")  # C:\... on Windows


@contextmanager
def _defaults(values: dict[str, str]) -> Iterator[None]:
    """The environment variables `values` while the body runs, each unless the user set it."""
    added = {key: value for key, value in values.items() if key not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for key in added:
            os.environ.pop(key, None)


def file_store_allowed(uri: str):
    """MLflow 3 keeps its file store in maintenance: `FileStore()` raises unless MLFLOW_ALLOW_FILE_STORE is true.
    For a file store (ours in RUN/mlruns, or one the user's MLFLOW_TRACKING_URI names) the switch is on while
    the body runs, unless the user set it (then theirs holds); the store MLflow builds is cached per URI."""
    return _defaults({"MLFLOW_ALLOW_FILE_STORE": "true"} if is_file_store(uri) else {})


def _first_request_quick():
    """MLflow retries a request to a server 7 times over about 4 minutes: the first request of a run, which only
    finds out whether the server answers, is tried once with a 10 s timeout (unless the user set either)."""
    return _defaults({"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"})


@contextmanager
def _store_lock(uri: str) -> Iterator[None]:
    """One process at a time finds or creates an experiment in the store `uri` (MLflow's file store checks a
    name and then creates it: two runs of a sweep starting together would make two experiments of one name)."""
    digest = hashlib.sha256(uri.encode()).hexdigest()[:16]
    path = Path(tempfile.gettempdir()) / f"rlntp-mlflow-{digest}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _numbers(record: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in record.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def _histograms(record: dict[str, Any]) -> dict[str, list[int]]:
    return {k: v for k, v in record.items() if k.endswith("_hist") and isinstance(v, list) and v}


def wandb_last_step(path: Path) -> int:
    """The last step of the history a W&B run file (RUN/wandb/offline-run-*/run-ID.wandb) holds; -1 for none.

    The file is a LevelDB-style log after a 7-byte header: blocks of 32 KiB, each chunk a 4-byte checksum, a 2-byte
    length and a 1-byte type (full, first, middle, last) before its bytes; whole records are
    `wandb_internal_pb2.Record`s. A file cut short by a kill ends at its last whole record.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data, block, last = Path(path).read_bytes(), 32 * 1024, -1
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = int.from_bytes(data[position + 4: position + 6], "little"), data[position + 6]
        if (length == 0 and kind == 0) or position + 7 + length > len(data):
            break
        pending += data[position + 7: position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full, last
            record = pb.Record()
            try:
                record.ParseFromString(pending)
            except Exception:  # a record the kill cut: what came before it is the file's history
                break
            pending = b""
            if record.WhichOneof("record_type") == "history":
                last = max([last, *(int(json.loads(i.value_json)) for i in record.history.item
                                    if ("/".join(i.nested_key) or i.key) == "_step")])
    return last


def _run_name(run_dir: Path, group: str | None) -> str:
    """A run's name in its trackers: its directory's name, or for a sweep's run (SWEEP/runs/JOB) the job's name,
    so that the runs of a sweep in one store are told apart."""
    for parent in run_dir.parents:
        if group and parent.name == "runs" and parent.parent.name == group:
            return run_dir.relative_to(parent).as_posix()
    return run_dir.name


def _hint(name: str, error: Exception) -> str:
    """What the user can change for `error` of tracker `name`."""
    text, uri = str(error), os.environ.get("MLFLOW_TRACKING_URI", "")
    database = urlparse(uri).scheme.split("+")[0] in ("sqlite", "mysql", "postgresql", "mssql")
    if name == "mlflow" and database and importlib.util.find_spec("sqlalchemy") is None:
        return ("MLflow's database stores need sqlalchemy and alembic: pip install sqlalchemy alembic, or unset "
                "MLFLOW_TRACKING_URI for a file store in RUN/mlruns")
    allowed = os.environ.get("MLFLOW_ALLOW_FILE_STORE")
    if name == "mlflow" and allowed is not None and allowed.lower() not in ("true", "1") and is_file_store(uri):
        return (f"MLflow refuses file stores while MLFLOW_ALLOW_FILE_STORE={allowed}: unset it (rlntp then allows "
                "them for its own calls) or set MLFLOW_TRACKING_URI to a database")
    if isinstance(error, ImportError):
        module, extra = _PACKAGES[name]
        return f"{module} does not import cleanly (a version mismatch?): pip install -U 'rlntp[{extra}]'"
    if name == "mlflow" and urlparse(uri).scheme in ("http", "https"):
        return (f"check that the MLflow server at MLFLOW_TRACKING_URI={uri} answers from this machine, or unset "
                "MLFLOW_TRACKING_URI for a file store in RUN/mlruns")
    if name == "mlflow":
        where = f"MLFLOW_TRACKING_URI={uri}" if uri else "RUN/mlruns"
        return (f"check that {where} is a store this process can write (a file: path, or a database with its "
                "driver installed); unset MLFLOW_TRACKING_URI for a file store in RUN/mlruns")
    if name == "wandb":
        if "API key" in text or "api_key" in text:
            return "log in (wandb login, or WANDB_API_KEY), or unset WANDB_MODE for an offline run in RUN/wandb"
        return "check WANDB_MODE and WANDB_DIR, or unset them for an offline run in RUN/wandb"
    return "check that RUN/tensorboard can be written"


def warn(name: str, what: str, error: Exception, record: str = "metrics.jsonl has every record") -> None:
    """The one line on stderr that says tracker `name` failed to `what` (start, log, ...), why, what to change, and
    that it is dropped."""
    cause = " ".join(f"{type(error).__name__}: {error}".split())
    cause = cause if len(cause) <= 300 else cause[:297] + "..."
    print(f"warning: --report-to {name} failed to {what} ({cause}); {_hint(name, error)}; it is dropped for this "
          f"run, which goes on ({record})", file=sys.stderr)


def mlflow_store_opens(uri: str) -> bool:
    """Whether MLflow opens the tracking store `uri` (for a library that drives MLflow itself: TRL); if not, the
    one warning line."""
    try:
        with file_store_allowed(uri), _first_request_quick():
            from mlflow.tracking import MlflowClient

            MlflowClient(uri).search_experiments(max_results=1)
        return True
    except Exception as e:
        warn("mlflow", "start", e, "its trainer's own log has every record")
        return False


class Trackers:
    """The trackers of one run: `log(record)` for each metrics record, `image(path)` at the end, then `close()`.

    A run directory that already names its tracker runs (RUN/trackers.json, written by a run now resumed)
    continues them. Any failure of a tracker is one warning line on stderr, and that tracker is dropped.
    """

    def __init__(self, names: tuple[str, ...], run_dir: Path, config: dict[str, Any], group: str | None = None):
        self.run_dir, self.names = Path(run_dir), check_trackers(names)
        self.config, self.group = config, group or "rlntp"
        self.name = _run_name(self.run_dir, group)
        self._state = self._read_state()
        self._held: dict[str, int] = {}
        """MLflow, W&B: the last step their runs hold (-1: none)"""
        self._caught_up = False
        self._open: dict[str, Any] = {}
        for name in self.names:
            opened = self._attempt(name, "start", lambda: getattr(self, f"_open_{name}")(self._state.get(name, {})))
            if opened is not None:
                self._open[name] = opened

    def __enter__(self) -> "Trackers":
        return self

    def __exit__(self, kind, error, traceback) -> None:
        if kind is None:
            self.close()
        else:  # the run failed or was stopped: its tracker runs say so
            self.close("KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED")

    def _read_state(self) -> dict[str, dict[str, Any]]:
        try:
            state = json.loads((self.run_dir / TRACKER_STATE).read_text())
        except (OSError, ValueError):
            return {}
        if not isinstance(state, dict):
            return {}
        return {k: v for k, v in state.items() if k in TRACKERS and isinstance(v, dict)}

    def _record_run(self, name: str, ids: dict[str, str]) -> None:
        """Name tracker `name`'s new run in RUN/trackers.json, for a resumed run to continue."""
        self._state[name] = ids
        atomic_write_text(self.run_dir / TRACKER_STATE, json.dumps(self._state, indent=2) + "\n")

    def _attempt(self, name: str, what: str, call: Callable[[], Any]) -> Any:
        """`call()` for tracker `name`; on any failure, one warning line and the tracker is dropped (None)."""
        try:
            with self._environment(name):
                return call()
        except Exception as e:  # a tracker never stops training: metrics.jsonl has the record
            warn(name, what, e)
            if name in self._open:
                self._abandon(name, self._open.pop(name))
            return None

    def _environment(self, name: str):
        """What tracker `name` needs around each call: MLflow, its file store allowed (`file_store_allowed`)."""
        return file_store_allowed(self._mlflow_uri()) if name == "mlflow" else nullcontext()

    def _abandon(self, name: str, opened: Any) -> None:
        try:
            with self._environment(name):
                getattr(self, f"_close_{name}")(opened, "FAILED")
        except Exception:  # already reported once; a tracker that cannot even close stays silent
            pass

    def _each(self, what: str, *args) -> None:
        for name in list(self._open):
            call = getattr(self, f"_{what}_{name}")
            self._attempt(name, what, lambda: call(self._open[name], *args))

    def log(self, record: dict[str, Any]) -> None:
        """One metrics record (an evaluation, or an RL step's statistics) at its step."""
        self._catch_up(record["step"])
        for name in list(self._open):
            if record["step"] > self._held.get(name, -1):
                self._log(name, record)

    def _log(self, name: str, record: dict[str, Any]) -> None:
        self._attempt(name, "log", lambda: getattr(self, f"_log_{name}")(self._open[name], record))
        if name in self._held:
            self._held[name] = record["step"]

    def _catch_up(self, before: float = float("inf")) -> None:
        """Once per process, before its first record (at step `before`): log the records of metrics.jsonl that a
        tracker run lacks (MLflow's, W&B's: a kill can end a run after it wrote a record and before its tracker
        run had it, and W&B writes its file every 15 s). Records a tracker run holds are not logged again."""
        if self._caught_up:
            return
        self._caught_up = True
        if not any(name in self._open for name in self._held):
            return
        from rlntp.runs.metrics import read_metrics

        for record in read_metrics(self.run_dir):
            for name in self._held:
                if name in self._open and self._held[name] < record["step"] < before:
                    self._log(name, record)

    def image(self, path: Path, tag: str = "plot") -> None:
        """A figure (PNG) of the run."""
        self._each("image", Path(path), tag)

    def close(self, status: str = "FINISHED") -> None:
        """End each tracker run, with MLflow's `status` (FINISHED, FAILED or KILLED)."""
        if status == "FINISHED":
            self._catch_up()  # a resumed run that had no step left to train
        self._each("close", status)
        self._open.clear()

    # TensorBoard
    def _open_tensorboard(self, previous: dict[str, Any]):
        from torch.utils.tensorboard import SummaryWriter

        self._tensorboard_restarts = (self.run_dir / TRACKER_DIRS["tensorboard"]).is_dir()  # a resumed run's
        writer = SummaryWriter(log_dir=str(self.run_dir / TRACKER_DIRS["tensorboard"]))
        writer.add_text("config", "```\n" + json.dumps(self.config, indent=2) + "\n```")
        return writer

    def _log_tensorboard(self, writer, record: dict[str, Any]) -> None:
        step = record["step"]
        if self._tensorboard_restarts:  # TensorBoard's reader then drops the steps from here on of earlier files
            from tensorboard.compat.proto.event_pb2 import Event, SessionLog

            writer.file_writer.add_event(Event(step=step, session_log=SessionLog(status=SessionLog.START)))
            self._tensorboard_restarts = False
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

    def _close_tensorboard(self, writer, status: str) -> None:
        writer.close()

    # Weights & Biases (offline in RUN/wandb unless the user's WANDB_* settings say otherwise)
    def _open_wandb(self, previous: dict[str, Any]):
        import wandb

        os.environ.setdefault("WANDB_SILENT", "true")
        env = os.environ.get
        # each read now and passed: wandb reads the environment once per process, at its first run
        options: dict[str, Any] = dict(mode=env("WANDB_MODE", "offline"), project=env("WANDB_PROJECT", "rlntp"),
                                       group=env("WANDB_RUN_GROUP", self.group), name=env("WANDB_NAME", self.name),
                                       entity=env("WANDB_ENTITY"), dir=env("WANDB_DIR") or str(self.run_dir))
        if previous.get("id"):  # offline, a resumed run is a second offline-run-*-ID directory of the same run
            options |= dict(id=previous["id"], resume="allow")
        run = wandb.init(config=flatten(self.config), reinit="create_new", **options)
        if run.id != previous.get("id"):
            self._record_run("wandb", {"id": run.id})
        # online, W&B's server knows the run's next step; offline, its earlier .wandb files of this id hold the steps
        segment = Path(run.settings.sync_dir)
        earlier = [f for f in segment.parent.glob(f"*-{run.id}/run-{run.id}.wandb") if f.parent != segment]
        self._held["wandb"] = max([run.step - 1, *map(wandb_last_step, earlier)])
        return run

    def _log_wandb(self, run, record: dict[str, Any]) -> None:
        import numpy as np
        import wandb

        values: dict[str, Any] = dict(_numbers(record))
        for key, counts in _histograms(record).items():
            values[key] = wandb.Histogram(np_histogram=(np.asarray(counts), np.arange(len(counts) + 1) - 0.5))
        run.log(values, step=record["step"], commit=True)  # written now, not when a later step comes

    def _image_wandb(self, run, path: Path, tag: str) -> None:
        import wandb

        run.log({tag: wandb.Image(str(path))})

    def _close_wandb(self, run, status: str) -> None:
        run.finish(exit_code=0 if status == "FINISHED" else 1)

    # MLflow (a file store in RUN/mlruns unless MLFLOW_TRACKING_URI says otherwise)
    def _open_mlflow(self, previous: dict[str, Any]):
        from mlflow.entities import Param
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        uri = self._mlflow_uri()
        client = MlflowClient(uri)
        with _first_request_quick():
            client.search_experiments(max_results=1)
        if previous.get("uri") == uri and previous.get("run_id"):
            run_id = previous["run_id"]
            try:
                metrics = client.get_run(run_id).data.metrics
            except MlflowException:  # gone from the store: a new MLflow run
                pass
            else:
                client.update_run(run_id, status="RUNNING")  # a killed run was left RUNNING
                self._held["mlflow"] = max((m.step for key in metrics for m in client.get_metric_history(run_id, key)),
                                           default=-1)
                return client, run_id
        with _store_lock(uri):
            experiment_id = os.environ.get("MLFLOW_EXPERIMENT_ID") or self._mlflow_experiment(client)
        run_id = client.create_run(experiment_id, run_name=self.name,
                                   tags={"rlntp.run_dir": str(self.run_dir.resolve()), "rlntp.group": self.group}
                                   ).info.run_id
        self._record_run("mlflow", {"uri": uri, "run_id": run_id})
        self._held["mlflow"] = -1
        params = [Param(key, json.dumps(value)[:6000]) for key, value in flatten(self.config).items()]
        try:
            for i in range(0, len(params), 100):  # MLflow takes at most 100 params a batch
                client.log_batch(run_id, params=params[i: i + 100])
        except Exception:  # not left RUNNING
            client.set_terminated(run_id, "FAILED")
            raise
        return client, run_id

    def _mlflow_uri(self) -> str:
        return os.environ.get("MLFLOW_TRACKING_URI") or (self.run_dir / TRACKER_DIRS["mlflow"]).resolve().as_uri()

    def _mlflow_experiment(self, client) -> str:
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME") or self.group
        experiment = client.get_experiment_by_name(name)
        return experiment.experiment_id if experiment else client.create_experiment(name)

    def _log_mlflow(self, opened, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric

        client, run_id = opened
        now = int(time.time() * 1000)
        metrics = [Metric(key, value, now, record["step"]) for key, value in _numbers(record).items()]
        for i in range(0, len(metrics), 1000):  # MLflow takes at most 1000 metrics a batch
            client.log_batch(run_id, metrics=metrics[i: i + 1000])
        for key, counts in _histograms(record).items():
            client.log_dict(run_id, {"length": list(range(len(counts))), "count": counts},
                            f"histograms/{key.replace('/', '_')}/step_{record['step']}.json")

    def _image_mlflow(self, opened, path: Path, tag: str) -> None:
        client, run_id = opened
        client.log_artifact(run_id, str(path), artifact_path="figures")

    def _close_mlflow(self, opened, status: str) -> None:
        client, run_id = opened
        client.set_terminated(run_id, status)
