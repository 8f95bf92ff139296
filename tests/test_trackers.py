"""--report-to: what each tracker holds, read back with its own reader, equals metrics.jsonl."""

import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from rlntp.cli import main
from rlntp.runs.metrics import read_metrics

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


def test_mlflow_file_store_holds_every_metric_and_the_config(tracked):
    from mlflow.tracking import MlflowClient

    out, records = tracked
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


def test_wandb_offline_run_holds_every_metric(tracked):
    out, records = tracked
    (log,) = (out / "wandb").glob("offline-run-*/run-*.wandb")
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


def test_a_sweeps_runs_are_tracked_and_grouped_by_the_sweep(tmp_path):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    import rlntp

    spec = {"pretrain": {"task": {"d": 4}, "model": {"layers": 1, "width": 16, "heads": 2},
                         "train": {"steps": 2, "batch_size": 8, "eval_every": 2, "eval_samples": 16, "save_every": 2},
                         "axes": {"task.p_cot": [0.1, 0.9]}}}
    rlntp.sweep(spec, tmp_path / "mysweep", rlntp.ExecutorConfig(workers=1, report_to=("mlflow",)), progress=False)
    for run in (tmp_path / "mysweep" / "runs").glob("*/pretrain"):
        client = MlflowClient((run / "mlruns").resolve().as_uri())
        assert [e.name for e in client.search_experiments() if e.name != "Default"] == ["mysweep"]


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
