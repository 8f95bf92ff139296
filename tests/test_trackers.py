"""--report-to: what each tracker holds, read back with its own reader, equals metrics.jsonl."""

import importlib.util
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlntp.cli import main
from rlntp.runs.checkpoints import checkpoint_path, checkpoint_steps
from rlntp.runs.metrics import read_metrics

pytestmark = pytest.mark.unit

TINY = ["--d", "6", "--layers", "1", "--width", "16", "--heads", "2", "--steps", "20", "--batch-size", "16",
        "--eval-every", "10", "--eval-samples", "64", "--save-every", "20", "--device", "cpu", "--quiet"]


def _scalars(record: dict) -> dict[str, float]:
    return {k: v for k, v in record.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    out = tmp_path_factory.mktemp("tracked") / "run"
    main(["pretrain", *TINY, "--report-to", "tensorboard", "mlflow", "wandb", "--out", str(out)])
    return out, read_metrics(out)


@pytest.mark.integration
def test_tensorboard_holds_every_scalar_histogram_and_the_figure(tracked):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out, records = tracked
    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0, "histograms": 0, "images": 0})
    events.Reload()
    for key in _scalars(records[-1]):
        logged = [(e.step, e.value) for e in events.Scalars(key)]
        expected = [(r["step"], r[key]) for r in records if key in r]
        assert [s for s, _ in logged] == [s for s, _ in expected], key
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), key  # stored as float32
    histogram = events.Histograms("eval/greedy_len_hist")
    assert [h.step for h in histogram] == [r["step"] for r in records]
    assert [list(h.histogram_value.bucket) for h in histogram] == [r["eval/greedy_len_hist"] for r in records]
    assert events.Images("plot") and events.Tensors("config/text_summary")


@pytest.mark.integration
def test_mlflow_file_store_holds_every_metric_and_the_config(tracked, monkeypatch):
    from mlflow.tracking import MlflowClient

    out, records = tracked
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this switch
    client = MlflowClient((out / "mlruns").resolve().as_uri())
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    for key in _scalars(records[-1]):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert history == [(r["step"], pytest.approx(r[key])) for r in records if key in r], key
    assert json.loads(run.data.params["task.d"]) == 6 and run.info.run_name == "run"
    assert any(a.path == "figures" for a in client.list_artifacts(run.info.run_id))


def _wandb_records(path: Path):
    """The records of a W&B offline run file: a LevelDB-style log (7-byte header; blocks of 32 KiB; each record a
    4-byte checksum, 2-byte length, 1-byte type: full, first, middle, last), each a `wandb_internal_pb2.Record`."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32 * 1024
    assert data[:4] == b":W&B"
    position, pending = 7, b""
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length, kind = struct.unpack("<HB", data[position + 4: position + 7])
        if length == 0 and kind == 0:
            break
        pending += data[position + 7: position + 7 + length]
        position += 7 + length
        if kind in (1, 4):  # full, last
            record = pb.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def _finished(log: Path, timeout: float = 60) -> Path:
    """`log`, once its W&B run's exit record is there (wandb-core may write the file after `finish` returns)."""
    deadline = time.time() + timeout
    while not any(r.WhichOneof("record_type") == "exit" for r in _wandb_records(log)):
        assert time.time() < deadline, f"{log} has no exit record after {timeout} s"
        time.sleep(0.1)
    return log


@pytest.mark.integration
def test_wandb_offline_run_holds_every_metric(tracked):
    out, records = tracked
    (log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
    _finished(log)
    history = {}
    for record in _wandb_records(log):
        if record.WhichOneof("record_type") == "history":
            items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
            if "_step" in items and "eval/greedy_acc" in items:
                history[items["_step"]] = items
    assert sorted(history) == [r["step"] for r in records]
    for r in records:
        for key, value in _scalars(r).items():
            assert history[r["step"]][key] == pytest.approx(value), key
        assert history[r["step"]]["eval/greedy_len_hist/_type"] == "histogram"
        assert history[r["step"]]["eval/greedy_len_hist/values"] == r["eval/greedy_len_hist"]


@pytest.mark.integration
def test_no_tracker_is_imported_or_written_by_default(tmp_path):
    code = (f"import sys; from rlntp.cli import main; main(['pretrain', *{TINY!r}, '--out', {str(tmp_path / 'r')!r}]);"
            " print(sorted(m for m in ('tensorboard', 'wandb', 'mlflow') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["checkpoints", "config.json", "metrics.jsonl",
                                                                   "rlntp.lock", "task.json"]


@pytest.mark.parametrize("argv, message", [
    (["--report-to", "comet"], "--report-to comet: choose from none, tensorboard, wandb, mlflow"),
    (["--report-to", "none", "tensorboard"], "--report-to none means no tracker"),
])
def test_bad_trackers_are_one_line(argv, message, refused, tmp_path):
    refused(["pretrain", *TINY, *argv, "--out", str(tmp_path / "r")], message)
    assert not (tmp_path / "r").exists()


def test_a_sweeps_runs_are_tracked_and_grouped_by_the_sweep(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    import rlntp

    spec = {"pretrain": {"task": {"d": 4}, "model": {"layers": 1, "width": 16, "heads": 2},
                         "train": {"steps": 2, "batch_size": 8, "eval_every": 2, "eval_samples": 16, "save_every": 2},
                         "axes": {"task.p_cot": [0.1, 0.9]}}}
    rlntp.sweep(spec, tmp_path / "mysweep", rlntp.ExecutorConfig(workers=1, report_to=("mlflow",)), progress=False)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this switch
    for run in (tmp_path / "mysweep" / "runs").glob("*/pretrain"):
        client = MlflowClient((run / "mlruns").resolve().as_uri())
        assert [e.name for e in client.search_experiments() if e.name != "Default"] == ["mysweep"]


@pytest.mark.integration
def test_the_llm_stages_report_through_trl(tiny_model, tmp_path):
    """`rlntp llm sft --report-to tensorboard mlflow`: TRL's own callbacks, pointed into the run directory, offline."""
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from rlntp.llm.dataset import LLMDataConfig, make_dataset
    from rlntp.llm.tiny import gsm8k_records

    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(16)))
    make_dataset(LLMDataConfig(source=str(records), p_cot=0.5), tmp_path / "data")
    out = tmp_path / "sft"
    code = ("import os; os.environ.pop('MLFLOW_TRACKING_URI', None); from rlntp.cli import main; "
            f"main(['llm', 'sft', '--model', {str(tiny_model)!r}, '--data', {str(tmp_path / 'data')!r}, '--epochs', "
            f"'1', '--per-device-batch', '4', '--cpu', '--quiet', '--report-to', 'tensorboard', 'mlflow', '--out', "
            f"{str(out)!r}])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    (events,) = {p.parent for p in (out / "runs").rglob("events.out.tfevents.*")}
    accumulator = EventAccumulator(str(events))
    accumulator.Reload()
    assert "train/loss" in accumulator.Tags()["scalars"]
    assert any((out / "mlruns").rglob("metrics/loss")) or any((out / "mlruns").rglob("metrics/train_loss"))


# Hostile settings: a tracker that cannot start or log is one warning line and is dropped; the run goes on.

SMALL = ["--d", "6", "--layers", "1", "--width", "16", "--heads", "2", "--steps", "4", "--batch-size", "8",
         "--eval-every", "2", "--eval-samples", "16", "--save-every", "2", "--device", "cpu", "--quiet"]
TIMINGS = ("perf/tokens_per_s", "perf/step_s")


def _without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMINGS} for r in records]


@pytest.fixture(scope="module")
def untracked(tmp_path_factory):
    """metrics.jsonl of SMALL without trackers: what every run with a failing tracker must write too."""
    out = tmp_path_factory.mktemp("untracked") / "run"
    main(["pretrain", *SMALL, "--out", str(out)])
    return _without_timings(read_metrics(out))


def _mlflow_reader(uri: str, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 reads its file store only with this switch
    return MlflowClient(uri)


def _history(client, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


def _no_home(monkeypatch, tmp_path):
    """No W&B key anywhere: not in the environment, not in ~/.netrc or W&B's settings."""
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("NETRC", str(tmp_path / "home" / ".netrc"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "home" / ".config" / "wandb"))


def _sqlite(monkeypatch, tmp_path):
    if importlib.util.find_spec("sqlalchemy") is not None:
        pytest.skip("sqlalchemy is installed: a sqlite: store works (MLflow's own test suite covers it)")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/mlflow.db")


def _unwritable(monkeypatch, tmp_path):
    (tmp_path / "a-file").write_text("")  # a path under a file cannot be made, whoever runs the test (root too)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "a-file" / "store").as_uri())


def _file_store_refused(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")  # the user's own switch holds


def _unreachable_server(monkeypatch, tmp_path):
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")


def _wandb_online_without_key(monkeypatch, tmp_path):
    _no_home(monkeypatch, tmp_path)
    monkeypatch.setenv("WANDB_MODE", "online")


def _mlflow_does_not_import(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "mlflow.tracking", None)  # installed, but a part fails to import


def _mlflow_fails_to_log(monkeypatch, tmp_path):
    from mlflow.tracking import MlflowClient

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MlflowClient, "log_dict", full)


def _tensorboard_fails_to_log(monkeypatch, tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the library\nover two lines")

    monkeypatch.setattr(SummaryWriter, "add_scalar", broken)


@pytest.mark.parametrize("tracker, hostile, message", [
    ("mlflow", _sqlite, "sqlalchemy"),
    ("mlflow", _unwritable, "NotADirectoryError"),
    ("mlflow", _file_store_refused, "MLFLOW_ALLOW_FILE_STORE"),
    ("mlflow", _unreachable_server, "answers from this machine"),  # in seconds, not MLflow's 4 minutes of retries
    ("wandb", _wandb_online_without_key, "No API key configured"),
    ("mlflow", _mlflow_does_not_import, "ModuleNotFoundError"),
    ("mlflow", _mlflow_fails_to_log, "failed to log (OSError: [Errno 28] No space left on device)"),
    ("tensorboard", _tensorboard_fails_to_log, "failed to log (RuntimeError: a bug in the library over two lines)"),
], ids=lambda v: getattr(v, "__name__", "")[1:] if callable(v) else None)
def test_a_failing_tracker_is_one_warning_and_the_run_goes_on(tracker, hostile, message, untracked, tmp_path,
                                                               monkeypatch, capfd):
    pytest.importorskip(tracker)
    hostile(monkeypatch, tmp_path)
    out = tmp_path / "run"
    main(["pretrain", *SMALL, "--report-to", tracker, "--out", str(out)])
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith(f"warning: --report-to {tracker} failed to ") and message in err, err
    assert err.endswith("it is dropped for this run, which goes on (metrics.jsonl has every record)"), err
    assert _without_timings(read_metrics(out)) == untracked
    assert checkpoint_steps(out) == [2, 4]


def test_a_user_set_mlflow_file_store_and_experiment_are_used(untracked, tmp_path, monkeypatch, capfd):
    pytest.importorskip("mlflow")
    store = (tmp_path / "my store").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "mine")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "run"
    main(["pretrain", *SMALL, "--report-to", "mlflow", "--out", str(out)])
    assert capfd.readouterr().err == ""
    assert "MLFLOW_ALLOW_FILE_STORE" not in os.environ  # switched on for our calls only
    assert not (out / "mlruns").exists()
    client = _mlflow_reader(store, monkeypatch)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    (run,) = client.search_runs([experiment.experiment_id])
    assert (experiment.name, run.info.run_name, run.info.status) == ("mine", "run", "FINISHED")
    assert run.data.tags["rlntp.run_dir"] == str(out.resolve())
    records = read_metrics(out)
    for key in ("eval/greedy_acc", "train/loss", "samples_seen", "perf/step_s"):
        assert _history(client, run.info.run_id, key) == [(r["step"], pytest.approx(r[key])) for r in records
                                                          if key in r], key
    assert json.loads((out / "trackers.json").read_text()) == {"mlflow": {"uri": store, "run_id": run.info.run_id}}


@pytest.mark.integration
def test_a_sweep_logs_into_one_shared_store(tmp_path, monkeypatch, capfd):
    """The documented "one store for a whole sweep": two runs at once (two worker processes), one MLflow run each."""
    pytest.importorskip("mlflow")
    import rlntp

    store = (tmp_path / "shared").as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    spec = {"pretrain": {"task": {"d": 4}, "model": {"layers": 1, "width": 16, "heads": 2},
                         "train": {"steps": 2, "batch_size": 8, "eval_every": 1, "eval_samples": 16, "save_every": 2},
                         "axes": {"task.p_cot": [0.1, 0.9]}}}
    rlntp.sweep(spec, tmp_path / "mysweep", rlntp.ExecutorConfig(workers=2, report_to=("mlflow",)), progress=False)
    assert "warning" not in capfd.readouterr().err
    client = _mlflow_reader(store, monkeypatch)
    (experiment,) = [e for e in client.search_experiments() if e.name != "Default"]
    runs = client.search_runs([experiment.experiment_id])
    assert experiment.name == "mysweep"
    assert sorted(r.info.run_name for r in runs) == ["p_cot=0.1/pretrain", "p_cot=0.9/pretrain"]
    for run in runs:
        assert run.info.status == "FINISHED"
        records = read_metrics(tmp_path / "mysweep" / "runs" / run.info.run_name)
        assert _history(client, run.info.run_id, "eval/greedy_acc") == [
            (r["step"], pytest.approx(r["eval/greedy_acc"])) for r in records]
        assert json.loads(run.data.params["task.p_cot"]) == float(run.info.run_name[6:9])


def _wandb_history(out: Path) -> tuple[set[str], list[int]]:
    """The run ids of RUN/wandb's offline runs, and the steps their histories hold (each step once per log)."""
    ids, steps = set(), []
    for log in sorted(out.glob("wandb/offline-run-*/run-*.wandb")):
        for record in _wandb_records(_finished(log) if log == max(out.glob("wandb/offline-run-*/run-*.wandb"))
                                     else log):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                ids.add(record.run.run_id)
            elif kind == "history":
                items = {"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in record.history.item}
                if "eval/greedy_acc" in items:
                    steps.append(items["_step"])
    return ids, steps


@pytest.mark.integration
def test_kill_9_and_resume_continue_one_mlflow_run_and_one_wandb_run(tmp_path, pause, monkeypatch):
    """Killed right after its step-4 checkpoint, with that checkpoint then removed (as if the kill came just before
    it was saved): the resumed run trains steps 3-4 again from step 2, and its trackers hold each step once."""
    pytest.importorskip("mlflow")
    pytest.importorskip("wandb")
    out = tmp_path / "run"
    argv = [sys.executable, "-m", "rlntp.cli", "pretrain", *SMALL, "--steps", "6", "--eval-every", "1",
            "--report-to", "mlflow", "wandb", "tensorboard", "--out", str(out)]
    env = pause.env(4)
    env.pop("WANDB_SERVICE", None)  # each process its own wandb-core, as in a shell (not this test's, if it has one)
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    (pid,) = pause.wait(4, process)
    os.kill(pid, signal.SIGKILL)
    process.wait()
    shutil.rmtree(checkpoint_path(out, 4))
    pause.release(4)  # the resumed run saves step 4 again
    first = json.loads((out / "trackers.json").read_text())
    resumed = subprocess.run([*argv, "--resume"], capture_output=True, text=True, env=env)
    assert resumed.returncode == 0 and resumed.stderr == "", resumed.stderr
    records = read_metrics(out)
    assert [r["step"] for r in records] == list(range(7))

    client = _mlflow_reader((out / "mlruns").resolve().as_uri(), monkeypatch)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert (run.info.run_id, run.info.status) == (first["mlflow"]["run_id"], "FINISHED")
    for key in ("eval/greedy_acc", "train/loss", "samples_seen"):  # steps 3-4 as first logged: the same values
        assert _history(client, run.info.run_id, key) == [(r["step"], pytest.approx(r[key])) for r in records
                                                          if key in r], key
    assert [s for s, _ in _history(client, run.info.run_id, "perf/step_s")] == [1, 2, 3, 4, 5, 6]

    ids, steps = _wandb_history(out)  # the killed process's file holds what W&B wrote before the kill (every 15 s)
    assert ids == {first["wandb"]["id"]} and len(list(out.glob("wandb/offline-run-*"))) == 2
    assert steps == list(range(7))

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"), size_guidance={"scalars": 0})
    events.Reload()  # two event files: the second's restart at step 3 drops the first's steps 3-4
    assert [(e.step, e.value) for e in events.Scalars("eval/greedy_acc")] == [
        (r["step"], pytest.approx(r["eval/greedy_acc"])) for r in records]


def test_the_llm_stages_use_a_user_set_mlflow_file_store_and_drop_a_failing_one(tmp_path, monkeypatch, capfd):
    """What `rlntp llm sft|grpo` hands TRL: a user's file: store allowed; one that cannot open, dropped in one line."""
    pytest.importorskip("mlflow")
    from rlntp.llm.common import trl_report_to

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "")  # restored after the test: trl_report_to sets it for TRL
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "store").as_uri())
    assert trl_report_to(("mlflow",), tmp_path / "out") == ["mlflow"]
    assert os.environ["MLFLOW_ALLOW_FILE_STORE"] == "true" and capfd.readouterr().err == ""
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "a-file" / "store").as_uri())
    assert trl_report_to(("mlflow", "tensorboard"), tmp_path / "out") == ["tensorboard"]
    err = capfd.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("warning: --report-to mlflow failed to start ("), err
    assert not (tmp_path / "out").exists()


def test_a_user_set_wandb_dir_and_project_are_used(tmp_path, monkeypatch, capfd):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("WANDB_PROJECT", "my-project")
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline all the same
    (tmp_path / "mine").mkdir()
    out = tmp_path / "run"
    main(["pretrain", *SMALL, "--report-to", "wandb", "--out", str(out)])
    assert capfd.readouterr().err == ""
    assert not (out / "wandb").exists()
    (log,) = (tmp_path / "mine" / "wandb").glob("offline-run-*/run-*.wandb")
    (run,) = [r.run for r in _wandb_records(_finished(log)) if r.WhichOneof("record_type") == "run"]
    assert (run.project, run.run_id) == ("my-project", json.loads((out / "trackers.json").read_text())["wandb"]["id"])
    assert _wandb_history(tmp_path / "mine") == ({run.run_id}, [0, 2, 4])


def test_a_start_that_fails_before_its_first_metrics_leaves_no_tracker_files(tmp_path, monkeypatch):
    """The trackers start (trackers.json, their folders) before the model is built; a start that fails there leaves
    the directory as it was, so a plain retry is not refused as "already holds a run"."""
    from rlntp.training import pretrain

    def broken(*args, **kwargs):
        raise RuntimeError("a model that cannot be built")

    out = tmp_path / "r"
    argv = ["pretrain", *TINY, "--out", str(out), "--report-to", "tensorboard", "--quiet"]
    with monkeypatch.context() as patch:
        patch.setattr(pretrain, "build_model", broken)
        with pytest.raises(RuntimeError, match="cannot be built"):
            main(argv)
    assert not out.exists() or [p.name for p in out.iterdir()] in ([], ["rlntp.lock"])
    main(argv)
    assert checkpoint_steps(out)[-1] == 20
