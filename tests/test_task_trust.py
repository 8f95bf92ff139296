"""Task code runs only when the user names it, and a task is identified by its content (docs/tasks.md, "Which code
runs", "A task's identity"; `rlntp.tasks.trust`).

The payload: a copy of examples/tasks/mod3.py that writes a marker file when it is imported. A run directory, a
sweep file and a recipe directory that name it are read by every reading command; none may import it unless the
user names it (`--trust-task`). The tests run the commands in this process, each with this process's trust and its
import of the payload forgotten first (`fresh`), so an import would write the marker again; one runs the real
command line in a subprocess.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import rlntp
from rlntp.cli import main
from rlntp.errors import ConfigError
from rlntp.tasks import trust

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
MOD3 = (ROOT / "examples" / "tasks" / "mod3.py").read_text()
PAYLOAD = 'import pathlib\npathlib.Path(__file__).with_name("MARKER").write_text("ran")\n' + MOD3
TINY = ["--layers", "1", "--width", "16", "--heads", "2", "--batch-size", "8", "--eval-samples", "8", "--device", "cpu",
        "--quiet"]
NAMES = "names task code"


def forget(directory: Path) -> None:
    """Drop this process's trust in the task files in `directory`, its imports of them, and their markers."""
    trust._TRUSTED.difference_update({spec for spec in trust._TRUSTED if spec.startswith(str(directory))})
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(directory)):
            del sys.modules[name]
    for marker in directory.rglob("MARKER"):
        marker.unlink()


@pytest.fixture(autouse=True)
def fresh():
    """Each test starts with no task trusted and ends with the trust it found (other modules' tests keep theirs)."""
    saved = set(trust._TRUSTED)
    trust._TRUSTED.clear()
    yield
    trust._TRUSTED.clear()
    trust._TRUSTED.update(saved)


def pretrain(directory: Path, out: Path, *extra: str, steps: int = 2) -> Path:
    main(["pretrain", "--task", f"{directory / 'pay.py'}:SumMod3Task", "--d", "4", "--steps", str(steps),
          "--eval-every", "2", "--save-every", "2", *TINY, "--out", str(out), *extra])
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A pretrained run of the payload (2 steps), a sweep file and a recipe directory naming it, a run whose
    config.json names `this:Foo` (the standard library module that prints text when imported)."""
    home = tmp_path_factory.mktemp("trust")
    (home / "pay.py").write_text(PAYLOAD)
    run = pretrain(home, home / "run")
    spec = f"{home / 'pay.py'}:SumMod3Task"
    (home / "sweep.toml").write_text('[pretrain]\ntask = { task = "pay.py:SumMod3Task", d = 4 }\n'
                                     'model = { layers = 1, width = 16, heads = 2 }\n'
                                     'train = { steps = 2, batch_size = 8, eval_every = 2, eval_samples = 8 }\n')
    sweep = home / "sweep_out"
    shutil.copytree(run, sweep / "runs" / "base" / "pretrain")
    (sweep / "status.json").write_text(json.dumps({"runs": {}}))
    recipe = home / "all" / "fig1"
    shutil.copytree(run, recipe / "runs" / "pre")
    (recipe / "report.json").write_text(json.dumps({"recipe": "fig1", "preset": "smoke", "settings": {},
                                                    "claims": []}))
    this = home / "this_run"
    shutil.copytree(run, this)
    config = json.loads((this / "config.json").read_text())
    (this / "config.json").write_text(json.dumps(config | {"task": config["task"] | {"task": "this:Foo"}}))
    forget(home)
    return {"home": home, "run": run, "spec": spec, "sweep": sweep, "this": this}


def test_every_reading_command_runs_no_task_code_named_in_what_it_reads(world, refused, capsys, tmp_path):
    home, run, spec = world["home"], world["run"], world["spec"]
    forget(home)
    message = f"{run / 'config.json'} {NAMES} {spec} (sha256 "
    for argv in (["eval", str(run)], ["plot", str(run)],
                 ["posttrain", "--from", str(run), "--out", str(tmp_path / "post"), "--quiet"]):
        line = refused(argv, message)
        assert f"pass --trust-task {spec} to run it" in line
        assert not (home / "MARKER").exists(), argv
    assert not (tmp_path / "post").exists() and not (run / "plot.png").exists()
    for call in (lambda: rlntp.evaluate(run), lambda: rlntp.plot(run),
                 lambda: rlntp.posttrain(rlntp.PosttrainConfig(steps=1), run, tmp_path / "post")):
        with pytest.raises(ConfigError, match=NAMES):
            call()
    assert len(rlntp.metrics(run)) == 2  # reads metrics.jsonl only
    main(["report", str(home / "all"), "--out", str(tmp_path / "report.html")])
    sweep_file = str(home / "sweep.toml")
    main(["sweep", sweep_file, "--out", str(world["sweep"]), "--status"])
    assert "1 runs" in capsys.readouterr().out
    refused(["sweep", sweep_file, "--out", str(tmp_path), "--status"], "is not a sweep directory")
    before = sorted(p.name for p in home.iterdir())
    refused(["sweep", sweep_file, "--plan"], f"{sweep_file} {NAMES} {spec}")
    with pytest.raises(ConfigError, match=NAMES):
        rlntp.plan_sweep(sweep_file)
    assert sorted(p.name for p in home.iterdir()) == before  # --plan writes nothing
    assert not (home / "MARKER").exists()


def test_with_trust_task_they_run_it(world, capsys, tmp_path):
    run, spec, home = world["run"], world["spec"], world["home"]
    main(["eval", str(run), "--samples", "8", "--json", "--trust-task", spec])
    assert 0 <= json.loads(capsys.readouterr().out)["eval/greedy_acc"] <= 1
    assert (home / "MARKER").exists()  # the code ran, as named
    main(["posttrain", "--from", str(run), "--steps", "1", "--prompts-per-step", "2", "--rollouts-per-prompt", "2",
          "--eval-samples", "4", "--out", str(tmp_path / "post"), "--quiet", "--trust-task", spec])
    assert json.loads((tmp_path / "post" / "task.json").read_text())["changes"] == []
    forget(home)
    assert rlntp.plot(run, tmp_path / "p.png", trust_task=spec).stat().st_size > 1000
    forget(home)
    plan = rlntp.plan_sweep(home / "sweep.toml", "cpu", trust_task=str(home / "pay.py") + ":SumMod3Task")
    assert plan["cost"]["seconds"] > 0
    forget(home)


def test_a_relative_task_path_resolves_against_the_cwd_and_is_not_run(world, refused, tmp_path, monkeypatch):
    """A hand-edited config.json naming `pay.py:SumMod3Task` (relative), read from a directory that holds another
    pay.py: that file is not imported either."""
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps(config | {"task": config["task"] | {"task": "pay.py:SumMod3Task"}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "pay.py").write_text(PAYLOAD)
    monkeypatch.chdir(elsewhere)
    refused(["eval", str(run)], f"{NAMES} {elsewhere / 'pay.py'}:SumMod3Task")
    assert not (elsewhere / "MARKER").exists()


@pytest.mark.integration
def test_a_module_named_in_a_config_is_not_imported(world, refused):
    """`this:Foo`: importing the standard library's `this` prints the Zen of Python."""
    this = world["this"]
    for argv in (["eval", str(this)], ["plot", str(this)], ["posttrain", "--from", str(this), "--out",
                                                             str(this.parent / "post_this")]):
        refused(argv, f"{NAMES} this:Foo (module this); rlntp runs no code named in a file it reads")
    assert "this" not in sys.modules
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", "eval", str(this)], capture_output=True, text=True)
    assert result.returncode == 2 and result.stdout == "", result
    assert len(result.stderr.splitlines()) == 1 and "this:Foo (module this)" in result.stderr


@pytest.mark.integration
def test_a_sweep_the_user_runs_runs_its_tasks_in_its_workers(tmp_path):
    """Running a sweep file is naming its tasks (docs/tasks.md): its post-training, in a spawned worker, reads the
    task from its pre-training's config.json and may run it."""
    (tmp_path / "pay.py").write_text(PAYLOAD)
    spec = {"pretrain": {"task": {"task": "pay.py:SumMod3Task", "d": 4}, "model": {"layers": 1, "width": 16,
                                                                                    "heads": 2},
                         "train": {"steps": 2, "batch_size": 8, "eval_every": 2, "eval_samples": 8, "save_every": 2}},
            "posttrain": {"g": {"from_steps": ["last"], "post": {"steps": 1, "prompts_per_step": 2,
                                                                 "rollouts_per_prompt": 2, "eval_samples": 4}}}}
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    table = rlntp.sweep(tmp_path / "sweep.json", tmp_path / "out", rlntp.ExecutorConfig(workers=2), "cpu",
                        progress=False)
    assert set(table["state"]) == {"done"} and set(table["stage"]) == {"pretrain", "posttrain"}


# --- identity --------------------------------------------------------------------------------------------------


def edit(directory: Path, old: str, new: str) -> None:
    path = directory / "pay.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    forget(directory)


def test_an_edited_task_file_is_refused_until_allowed_and_then_recorded(tmp_path, refused, capsys):
    (tmp_path / "pay.py").write_text(PAYLOAD)
    run, spec = pretrain(tmp_path, tmp_path / "run"), f"{tmp_path / 'pay.py'}:SumMod3Task"
    identity = json.loads((run / "task.json").read_text())["identity"]
    assert identity["class"] == "SumMod3Task" and len(identity["sha256"]) == 64 and len(identity["vocab"]) == 4
    state = json.loads((run / "checkpoints" / "step_0000002" / "trainer_state.json").read_text())
    assert state["task"] == identity
    edit(tmp_path, "last == x.sum(dim=1) % 3", "last == (x.sum(dim=1) + 1) % 3")  # the answer is now sum + 1
    changed = f"was made with another task: its source changed ({tmp_path / 'pay.py'}: sha256 {identity['sha256'][:12]}"
    post = ["posttrain", "--from", str(run), "--steps", "1", "--prompts-per-step", "2", "--rollouts-per-prompt", "2",
            "--eval-samples", "4", "--out", str(tmp_path / "post"), "--quiet", "--trust-task", spec]
    refused(post, changed)
    refused(["eval", str(run), "--trust-task", spec], changed)
    config = (run / "config.json").read_bytes()
    refused(["pretrain", "--task", spec, "--d", "4", "--steps", "4", "--eval-every", "2", "--save-every", "2", *TINY,
             "--out", str(run), "--resume"], changed)
    assert (run / "config.json").read_bytes() == config and not (tmp_path / "post").exists()

    main([*post, "--allow-task-change"])
    recorded = json.loads((tmp_path / "post" / "task.json").read_text())
    assert recorded["changes"][0]["step"] == 0 and "its source changed" in recorded["changes"][0]["change"]
    assert recorded["changes"][0]["was"]["sha256"] == identity["sha256"] != recorded["identity"]["sha256"]
    pretrain(tmp_path, run, "--resume", "--allow-task-change", steps=4)
    changes = json.loads((run / "task.json").read_text())["changes"]
    assert [c["step"] for c in changes] == [2] and "its source changed" in changes[0]["change"]
    capsys.readouterr()
    main(["eval", str(run), "--step", "2", "--samples", "8", "--json", "--trust-task", spec, "--allow-task-change"])
    assert "its source changed" in json.loads(capsys.readouterr().out)["task_change"]
    main(["eval", str(run), "--samples", "8", "--json", "--trust-task", spec])  # step 4 was made with the new file
    assert "task_change" not in json.loads(capsys.readouterr().out)


def test_a_grown_vocabulary_is_refused_even_when_changes_are_allowed(tmp_path, refused):
    (tmp_path / "pay.py").write_text(PAYLOAD)
    run, spec = pretrain(tmp_path, tmp_path / "run"), f"{tmp_path / 'pay.py'}:SumMod3Task"
    edit(tmp_path, 'vocab = ("0", "1", "2", "EOS")', 'vocab = ("0", "1", "2", "EOS", "X")')
    for extra in ([], ["--allow-task-change"]):
        refused(["posttrain", "--from", str(run), "--out", str(tmp_path / "post"), "--trust-task", spec, *extra],
                "its vocabulary grew from 4 to 5 tokens")
    assert not (tmp_path / "post").exists()


def test_a_dataset_made_by_another_class_of_the_same_name_and_params_is_refused(tmp_path, refused):
    (tmp_path / "pay.py").write_text(PAYLOAD)
    (tmp_path / "other.py").write_text(MOD3.replace("class SumMod3Task(Task)", "class Impostor(Task)"))
    main(["data", "sample", "--task", f"{tmp_path / 'other.py'}:Impostor", "--d", "4", "--train", "16", "--valid",
          "4", "--test", "8", "--out", str(tmp_path / "data")])
    manifest = json.loads((tmp_path / "data" / "manifest.json").read_text())
    assert manifest["task"] == "mod3" and manifest["task_identity"]["class"] == "Impostor"
    refused(["pretrain", "--task", f"{tmp_path / 'pay.py'}:SumMod3Task", "--d", "4", "--data", str(tmp_path / "data"),
             "--steps", "2", *TINY, "--out", str(tmp_path / "run")],
            f"dataset {tmp_path / 'data'} was made with another task: another class (Impostor -> SumMod3Task)")
    assert not (tmp_path / "run").exists()
    pretrain(tmp_path, tmp_path / "run", "--data", str(tmp_path / "data"), "--allow-task-change")
    change = json.loads((tmp_path / "run" / "task.json").read_text())["changes"][0]
    assert change["what"] == f"dataset {tmp_path / 'data'}" and "Impostor" in change["change"]


def test_runs_and_datasets_that_record_no_identity_still_load(tmp_path, capsys):
    """Made before rlntp recorded identities: taken as they are (unknown)."""
    run = tmp_path / "run"
    main(["pretrain", "--d", "4", "--steps", "2", "--eval-every", "2", "--save-every", "2", *TINY, "--out", str(run)])
    identity = json.loads((run / "task.json").read_text())["identity"]
    assert identity["class"] == "ParityTask" and identity["rlntp"] == rlntp.__version__
    state_file = run / "checkpoints" / "step_0000002" / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["task"]
    state_file.write_text(json.dumps(state))
    (run / "task.json").unlink()
    capsys.readouterr()
    main(["eval", str(run), "--samples", "8", "--json"])
    assert "task_change" not in json.loads(capsys.readouterr().out)
    main(["pretrain", "--d", "4", "--steps", "4", "--eval-every", "2", "--save-every", "2", *TINY, "--out", str(run),
          "--resume"])
    assert json.loads((run / "task.json").read_text())["changes"] == []


def test_an_installed_packages_task_is_identified_by_its_distribution_and_version(tmp_path, monkeypatch):
    package = tmp_path / "mod3pkg"
    package.mkdir()
    (package / "__init__.py").write_text(MOD3)
    info = tmp_path / "mod3pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mod3pkg\nVersion: 0.1\n")
    (info / "RECORD").write_text("mod3pkg/__init__.py,,\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    from mod3pkg import SumMod3Task

    identity = trust.task_identity(SumMod3Task(d=4, p_cot=0.5))
    assert identity["class"] == "SumMod3Task" and identity["module"] == "mod3pkg"
    assert identity["distribution"] == "mod3pkg" and identity["version"] == "0.1"
    assert identity["file"] == str(package / "__init__.py") and len(identity["sha256"]) == 64
    assert trust.identity_change(identity | {"version": "0.2"}, identity) == "version 0.2 -> 0.1"
    assert trust.identity_change({"class": "SumMod3Task"}, identity) is not None  # fields it lacked now differ
    assert trust.identity_change(None, identity) is None  # recorded nothing: taken as it is
    sys.modules.pop("mod3pkg")


def test_a_change_recorded_at_the_step_a_run_resumes_from_is_found_anew(tmp_path):
    """The steps from a resume's checkpoint on run again, so task.json keeps only the changes before it (as
    config.json's `changes` does): a change allowed at step 50, then reverted before the next checkpoint, is gone;
    one from before stays once."""
    from rlntp.runs.task_record import record_task

    old, new = {"class": "Old"}, {"class": "New"}
    source = {"step": 0, "what": "checkpoint source", "change": "another class (Src -> Old)"}
    record_task(tmp_path, old, [source], 0)
    record_task(tmp_path, new, [source, {"step": 50, "what": "checkpoint 50", "change": "another class"}], 50)
    record_task(tmp_path, old, [source], 50)
    recorded = json.loads((tmp_path / "task.json").read_text())
    assert recorded["identity"] == old and [(c["step"], c["what"]) for c in recorded["changes"]] == [
        (0, "checkpoint source")]


def test_the_api_takes_no_trusted_task_as_none(tmp_path):
    """trust_task=None means none, as the CLI's absent --trust-task does (not a wrong type)."""
    import rlntp
    from rlntp.errors import RunDirError

    with pytest.raises(RunDirError):
        rlntp.evaluate(tmp_path / "missing", trust_task=None)
