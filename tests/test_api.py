"""The Python API holds the CLI's standard: every public function refuses a wrong type, a missing or unknown
argument and an out-of-range value before any work, with one `UserError` of one line (a `ConfigError` for an
argument, a `RunDirError` for a directory that holds no run); `plan("all")` and `rlntp reproduce all --plan`
plan every recipe and write nothing. The good paths run in tests/test_notebook.py and the stage tests."""

import json
import shutil
from pathlib import Path

import pytest

import rlntp
from rlntp.cli import main
from rlntp.errors import ConfigError, RunDirError, UserError

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
RUN = "<run>"
"""Stands for the tiny pre-training run of the `run` fixture in the table below."""
TASK, MODEL, TRAIN = rlntp.TaskConfig(d=4), rlntp.ModelConfig(layers=1, width=16, heads=2), rlntp.PretrainConfig()

BAD = [  # (function, positional arguments, keyword arguments, what the one line says)
    ("sample", (), {"task": 5}, "task must be TaskConfig(...), a dictionary of its fields or a string (its task), "
                                "got 5"),
    ("sample", (), {"task": {"dd": 4}}, "task: TaskConfig has no field 'dd'; its fields are: task, d,"),
    ("sample", (), {"task": "nope"}, "unknown task 'nope'; choose one of: parity, mult"),
    ("sample", (), {"task": {"p_cot": 1.5}}, "p_cot must be in [0, 1], got 1.5"),
    ("sample", (), {"n": 0}, "n must be >= 1, got 0"),
    ("sample", (), {"n": -1}, "n must be >= 0, got -1"),
    ("sample", (), {"n": "3"}, "n must be a whole number, got '3'"),
    ("sample", (), {"n": True}, "n must be a whole number, got True"),
    ("sample", (), {"seed": 1.5}, "seed must be a whole number, got 1.5"),
    ("sample", (), {"seed": 2**64}, "seed must be at most 2**63 - 1"),
    ("sample", (), {"bogus": 1}, "sample(): got an unexpected keyword argument 'bogus'"),
    ("sample", (TASK, 2, 0, 1), {}, "sample(): too many positional arguments"),
    ("pretrain", (TASK, MODEL, TRAIN), {}, "pretrain(): missing a required argument: 'out'"),
    ("pretrain", (None, MODEL, TRAIN, "out"), {}, "task must be given, got none"),
    ("pretrain", (TASK, 3, TRAIN, "out"), {}, "model must be ModelConfig(...), a dictionary of its fields, got 3"),
    ("pretrain", (TASK, MODEL, "fast", "out"), {}, "train must be PretrainConfig(...), a dictionary of its fields"),
    ("pretrain", (TASK, {"layer": 1}, TRAIN, "out"), {}, "model: ModelConfig has no field 'layer'"),
    ("pretrain", (TASK, MODEL, {"steps": -1}, "out"), {}, "steps must be >= 1, got -1"),
    ("pretrain", (TASK, MODEL, {"lr": float("nan")}, "out"), {}, "lr must be a finite number, got nan"),
    ("pretrain", (TASK, MODEL, {"batch_size": 2.5}, "out"), {}, "batch_size must be a whole number, got 2.5"),
    ("pretrain", (TASK, MODEL, TRAIN, 3), {}, "out must be a path, got 3"),
    ("pretrain", (TASK, MODEL, TRAIN, ""), {}, "out must be a path, got ''"),
    ("pretrain", (TASK, MODEL, TRAIN, "out"), {"resume": "yes"}, "resume must be true or false, got 'yes'"),
    ("pretrain", (TASK, MODEL, TRAIN, "out"), {"progress": None}, "progress must be given, got none"),
    ("pretrain", (TASK, MODEL, TRAIN, "out"), {"allow_unverified": 1}, "allow_unverified must be true or false"),
    ("pretrain", (TASK, MODEL, TRAIN, "out"), {"report_to": "wandb"}, "report_to must be a list of values"),
    ("pretrain", (TASK, MODEL, TRAIN, "out"), {"report_to": ("nope",)}, "--report-to nope: choose from none"),
    ("posttrain", ({}, RUN), {}, "posttrain(): missing a required argument: 'out'"),
    ("posttrain", (3, RUN, "out"), {}, "post must be PosttrainConfig(...), a dictionary of its fields, got 3"),
    ("posttrain", ({"algo": "ppo"}, RUN, "out"), {}, "unknown algo 'ppo'"),
    ("posttrain", ({"temperature": -1.0}, RUN, "out"), {}, "temperature"),
    ("posttrain", ({}, None, "out"), {}, "from_run must be given, got none"),
    ("posttrain", ({}, "missing", "out"), {}, "missing is not a run directory (no config.json)"),
    ("posttrain", ({}, RUN, "out"), {"step": -1}, "step must be >= 0, got -1"),
    ("posttrain", ({}, RUN, "out"), {"step": 1.0}, "step must be a whole number, got 1.0"),
    ("posttrain", ({}, RUN, "out"), {"step": 3}, "step 3"),
    ("posttrain", ({}, RUN, "out"), {"resume": "no"}, "resume must be true or false, got 'no'"),
    ("evaluate", ("missing",), {}, "missing is not a run directory (no config.json); pass the --out of an rlntp run"),
    ("evaluate", (), {}, "evaluate(): missing a required argument: 'run_dir'"),
    ("evaluate", (RUN,), {"samples": 0}, "samples must be >= 1, got 0"),
    ("evaluate", (RUN,), {"samples": 10.0}, "samples must be a whole number, got 10.0"),
    ("evaluate", (RUN,), {"seed": -1}, "seed must be >= 0, got -1"),
    ("evaluate", (RUN,), {"threads": 0}, "threads must be between 1 and 1024, got 0"),
    ("evaluate", (RUN,), {"device": "gpu"}, "unknown device 'gpu'"),
    ("evaluate", (RUN,), {"device": ""}, "device must be a non-empty string, got ''"),
    ("evaluate", (RUN,), {"step": "2"}, "step must be a whole number, got '2'"),
    ("evaluate", (RUN,), {"step": 3}, "step 3"),
    ("metrics", ("missing",), {}, "missing is not a run directory (no config.json); pass the --out of an rlntp run"),
    ("metrics", (".",), {}, ". is not a run directory (no config.json)"),
    ("metrics", (None,), {}, "run_dir must be given, got none"),
    ("metrics", (3,), {}, "run_dir must be a path, got 3"),
    ("sweep", (3, "out"), {}, "spec must be a dictionary or a path, got 3"),
    ("sweep", ("missing.toml", "out"), {}, "sweep file missing.toml does not exist"),
    ("sweep", ({}, "out"), {}, "a sweep needs a [pretrain] table"),
    ("sweep", ({},), {}, "sweep(): missing a required argument: 'out'"),
    ("sweep", ({}, "out"), {"executor": "nope"}, "unknown executor 'nope'; choose one of: local, ray"),
    ("sweep", ({}, "out"), {"executor": 3}, "executor must be ExecutorConfig(...), a dictionary of its fields or a "
                                            "string (its executor), got 3"),
    ("sweep", ({}, "out"), {"executor": {"workers": 0}}, "workers must be >= 1, got 0"),
    ("sweep", ({}, "out"), {"executor": {"worker": 2}}, "executor: ExecutorConfig has no field 'worker'"),
    ("sweep", ({}, "out"), {"max_runs": 1.5}, "max_runs must be a whole number, got 1.5"),
    ("sweep", ({}, "out"), {"progress": "no"}, "progress must be true or false, got 'no'"),
    ("sweep", ({}, None), {}, "out must be given, got none"),
    ("plan_sweep", (3,), {}, "spec must be a dictionary or a path, got 3"),
    ("plan_sweep", ({},), {"max_runs": -1}, "max_runs must be >= 0, got -1"),
    ("plan_sweep", ({},), {"device": 3}, "device must be a non-empty string, got 3"),
    ("recipes", (1,), {}, "recipes(): too many positional arguments"),
    ("reproduce", ("nope",), {}, "unknown recipe 'nope'; choose one of: fig1,"),
    ("reproduce", (3,), {}, "name must be a non-empty string, got 3"),
    ("reproduce", ("fig1", "nope"), {}, "unknown preset 'nope'; choose one of: cpu, quick, paper"),
    ("reproduce", ("all", "tiny"), {}, "recipe fig1 has no preset 'tiny'; its presets: cpu, quick, paper"),
    ("reproduce", ("fig1",), {"inputs": {"source": "x"}}, "recipe fig1 takes no inputs"),
    ("reproduce", ("all",), {"inputs": {"source": "x"}}, "inputs are for one recipe of the LLM path, not for all"),
    ("reproduce", ("gsm8k",), {"inputs": {"sauce": "x"}}, "inputs: LLMInputs has no field 'sauce'"),
    ("reproduce", ("gsm8k",), {"inputs": 3}, "inputs must be LLMInputs(...), a dictionary of its fields, got 3"),
    ("reproduce", ("fig1", "cpu", "out"), {"executor": "nope"}, "unknown executor 'nope'"),
    ("reproduce", ("fig1", "cpu", "out"), {"progress": "yes"}, "progress must be true or false, got 'yes'"),
    ("reproduce", ("fig1", "cpu", 3), {}, "out must be a path, got 3"),
    ("plan", ("nope",), {}, "unknown recipe 'nope'; choose one of: fig1,"),
    ("plan", (None,), {}, "name must be given, got none"),
    ("plan", ("fig1", 3), {}, "preset must be a non-empty string, got 3"),
    ("plan", ("fig1", "nope"), {}, "unknown preset 'nope'; choose one of: cpu, quick, paper"),
    ("plan", ("all", "nope"), {}, "recipe fig1 has no preset 'nope'"),
    ("plan", ("fig1",), {"device": "gpu"}, "unknown device 'gpu'"),
    ("plan", ("all",), {"executor": {"executor": "slurm"}}, "the plan of all recipes takes no executor"),
    ("status", ("nope",), {}, "unknown recipe 'nope'; choose one of: fig1,"),
    ("status", ("fig1", "nope"), {}, "unknown preset 'nope'; choose one of: cpu, quick, paper"),
    ("status", ("all",), {}, "status is one recipe's: name one"),
    ("status", ("fig1", "cpu", 3), {}, "out must be a path, got 3"),
    ("plot", ("missing",), {}, "missing is not a run directory (no config.json)"),
    ("plot", (RUN, 3), {}, "out must be a path, got 3"),
    ("plot", (RUN, "figure.txt"), {}, ".png"),
    ("write_report", (3,), {}, "root must be a path, got 3"),
    ("write_report", ("missing",), {}, "missing is not a directory"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """One tiny pre-training run (2 steps of a 1-layer model on parity d = 4), its configs given as dictionaries."""
    out = tmp_path_factory.mktemp("api") / "pre"
    got = rlntp.pretrain({"task": "parity", "d": 4}, {"layers": 1, "width": 16, "heads": 2},
                         {"steps": 2, "batch_size": 8, "eval_every": 2, "save_every": 2, "eval_samples": 8}, out,
                         progress=False)
    assert got == out and len(rlntp.metrics(out)) == 2
    return out


def _tree(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*") if "__pycache__" not in p.parts}


@pytest.mark.parametrize("name, args, kwargs, says", BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_every_public_function_refuses_bad_arguments_in_one_line_before_any_work(name, args, kwargs, says, run,
                                                                                  tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = tuple(run if a == RUN else a for a in args)
    before, run_before = _tree(tmp_path), _tree(run)
    with pytest.raises(UserError) as raised:
        getattr(rlntp, name)(*args, **kwargs)
    message = str(raised.value)
    assert type(raised.value) in (ConfigError, RunDirError, rlntp.errors.CheckpointError), type(raised.value)
    assert says in message and "\n" not in message, message
    assert _tree(tmp_path) == before and _tree(run) == run_before  # nothing written, the run untouched


def test_the_table_covers_every_public_function():
    functions = {name for name in rlntp.__all__ if callable(getattr(rlntp, name)) and name[0].islower()}
    assert {case[0] for case in BAD} == functions


def test_a_config_may_be_a_dictionary_of_its_fields_or_a_name(run):
    from rlntp.api import _argument

    assert rlntp.sample("parity", n=3, seed=1) == rlntp.sample(rlntp.TaskConfig(), n=3, seed=1)
    assert rlntp.sample({"task": "parity", "d": 4}, 2) == rlntp.sample(rlntp.TaskConfig(d=4), 2)
    assert _argument("executor", "local", rlntp.ExecutorConfig | None) == rlntp.ExecutorConfig()
    assert _argument("executor", {"workers": 2}, rlntp.ExecutorConfig | None) == rlntp.ExecutorConfig(workers=2)
    assert json.loads((run / "config.json").read_text())["task"]["d"] == 4  # the dictionaries of the fixture


def test_metrics_of_a_run_without_evaluations_is_an_empty_frame_with_its_columns(run, tmp_path):
    from rlntp.api import METRIC_COLUMNS

    frame = rlntp.metrics(run)
    assert list(frame["step"]) == [0, 2] and set(METRIC_COLUMNS["pretrain"]) <= set(frame.columns)
    fresh = tmp_path / "fresh"  # a run killed before its first evaluation: its config, no metrics.jsonl yet
    fresh.mkdir()
    shutil.copy(run / "config.json", fresh / "config.json")
    empty = rlntp.metrics(fresh)
    assert empty.empty and list(empty.columns) == METRIC_COLUMNS["pretrain"]
    (fresh / "config.json").write_text("[]")
    with pytest.raises(RunDirError, match="is not an rlntp run config"):
        rlntp.metrics(fresh)


@pytest.fixture
def no_probe(monkeypatch):
    """Plans with fixed timing rates in place of each recipe's probe (test_plan.py runs the real probes)."""
    import rlntp.sweeps.plan

    monkeypatch.setattr(rlntp.sweeps.plan, "probe_rates", lambda job, device="auto": {
        "train_s_per_sequence": 1e-4, "generate_s_per_sequence": 1e-3})


def _files(root: Path) -> set[Path]:
    return {path for path in root.rglob("*") if "__pycache__" not in path.parts}


def test_reproduce_all_plan_plans_every_recipe_and_writes_nothing(no_probe, tmp_path, monkeypatch, capsys):
    from rlntp.experiments import recipes

    monkeypatch.chdir(tmp_path)
    chosen = [name for name, recipe in recipes().items() if recipe.in_all]
    before_repo, before_here = _files(ROOT / "src"), _files(tmp_path)
    main(["reproduce", "all", "--plan", "--device", "cpu"])
    text = capsys.readouterr().out
    main(["reproduce", "all", "--plan", "--json", "--device", "cpu"])
    planned = json.loads(capsys.readouterr().out)
    assert _files(tmp_path) == before_here and _files(ROOT / "src") == before_repo
    assert len(chosen) >= 10 and "mult" not in chosen
    for name in chosen:
        assert f"rlntp reproduce {name} --preset cpu: " in text, name
    assert text.startswith(f"rlntp reproduce all --preset cpu: every recipe of `rlntp reproduce all` ({len(chosen)})")
    assert "CPU-hours on cpu" in text and "theory: about" in text
    assert [p["recipe"] for p in planned["recipes"]] == chosen and planned["preset"] == "cpu"
    assert planned["cost"]["seconds"] == pytest.approx(sum(p["cost"]["seconds"] for p in planned["recipes"]
                                                           if "seconds" in p.get("cost", {})))
    assert planned == json.loads(json.dumps(rlntp.plan("all", device="cpu")))
    for argv, says in ((["--plan", "--preset", "tiny"], "error: recipe fig1 has no preset 'tiny'"),
                       (["--json"], "error: --json prints the plan: pass it with --plan")):
        with pytest.raises(SystemExit) as exited:
            main(["reproduce", "all", *argv, "--device", "cpu"])
        assert exited.value.code == 2 and capsys.readouterr().err.strip().startswith(says)
    assert _files(tmp_path) == before_here


SAME = [  # (a command line, the same request to the API): one message
    (["eval", "missing"], lambda run: rlntp.evaluate("missing")),
    (["eval", RUN, "--samples", "0"], lambda run: rlntp.evaluate(run, samples=0)),
    (["eval", RUN, "--step", "3"], lambda run: rlntp.evaluate(run, step=3)),
    (["sample", "--p-cot", "1.5"], lambda run: rlntp.sample({"p_cot": 1.5})),
    (["sample", "--task", "nope"], lambda run: rlntp.sample("nope")),
    (["pretrain", "--out", "out", "--steps", "0"], lambda run: rlntp.pretrain({}, {}, {"steps": 0}, "out")),
    (["pretrain", "--out", "out", "--report-to", "nope"], lambda run: rlntp.pretrain({}, {}, {}, "out",
                                                                                       report_to=("nope",))),
    (["posttrain", "--from", "missing", "--out", "out"], lambda run: rlntp.posttrain({}, "missing", "out")),
    (["posttrain", "--from", RUN, "--out", "out", "--algo", "ppo"], lambda run: rlntp.posttrain({"algo": "ppo"}, run,
                                                                                                 "out")),
    (["plot", "missing"], lambda run: rlntp.plot("missing")),
    (["sweep", "missing.toml", "--out", "out"], lambda run: rlntp.sweep("missing.toml", "out")),
    (["reproduce", "all", "--preset", "tiny", "--plan"], lambda run: rlntp.plan("all", "tiny")),
    (["reproduce", "fig1", "--preset", "nope", "--plan"], lambda run: rlntp.plan("fig1", "nope")),
    (["reproduce", "theory", "--preset", "nope", "--status"], lambda run: rlntp.status("theory", "nope")),
    (["report", "missing"], lambda run: rlntp.write_report("missing")),
]


@pytest.mark.parametrize("argv, call", SAME, ids=[" ".join(argv) for argv, _ in SAME])
def test_the_api_says_what_the_cli_says(argv, call, run, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main([str(run) if a == RUN else a for a in argv])
    printed = capsys.readouterr().err.strip()
    with pytest.raises(UserError) as raised:
        call(run)
    assert exited.value.code == 2 and printed == f"error: {raised.value}"
    assert not any(tmp_path.iterdir())
