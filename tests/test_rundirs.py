"""What rlntp promises about run directories: a safe --out, one writer, no debris, integrity, clean interrupts."""

import json
import os
import signal
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from rlntp.cli import main
from rlntp.errors import Diverged, RunDirError
from rlntp.runs import checkpoints, dirs, history, metrics
from rlntp.runs.dirs import LOCK
from rlntp.training.pretrain import PretrainConfig, PretrainRun, pretrain

pytestmark = pytest.mark.unit

TINY = ["--d", "6", "--layers", "1", "--width", "32", "--heads", "2", "--batch-size", "32", "--eval-samples", "64",
        "--device", "cpu", "--quiet"]



def _snapshot(path):
    return {str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None) for p in sorted(path.rglob("*"))}


def _cli(*args, env=None, **kwargs):
    # SIGINT at its default, so Python turns it into KeyboardInterrupt even when this test runs in the background
    # of a shell (which starts background jobs with SIGINT ignored, and a child inherits that)
    return subprocess.Popen([sys.executable, "-m", "rlntp.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env or os.environ,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kwargs)


def test_a_directory_with_user_files_is_refused_and_left_untouched(tmp_path, refused):
    user = tmp_path / "mine"
    (user / "checkpoints" / "step_0000003").mkdir(parents=True)
    (user / "checkpoints" / "step_0000003" / "notes.txt").write_text("my notes")
    (user / "metrics.jsonl").write_text('{"mine": 1}\n')
    before = _snapshot(user)
    for resume in ([], ["--resume"]):
        refused(["pretrain", *TINY, "--steps", "3", "--out", str(user), *resume],
               "holds files that are not an rlntp run")
        assert _snapshot(user) == before
    (tmp_path / "figs").mkdir()
    (tmp_path / "figs" / "fig1.png").write_bytes(b"my figure")
    refused(["reproduce", "fig1", "--out", str(tmp_path / "figs")], "holds files that are not this recipe's")
    assert _snapshot(tmp_path / "figs") == {"fig1.png": b"my figure"}
    refused(["data", "mult", "--digits", "2", "--train", "20", "--out", str(user)], "not an empty directory")
    assert _snapshot(user) == before


def test_out_must_be_a_directory_path_that_can_be_created(tmp_path, monkeypatch, refused):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "file").write_text("x")
    refused(["pretrain", *TINY, "--out", ""], "--out must not be empty")
    refused(["pretrain", *TINY, "--out="], "--out must not be empty")
    refused(["pretrain", *TINY, "--out", "file"], "is a file; choose a directory path")
    refused(["pretrain", *TINY, "--out", "file/run"], "cannot be created: file is a file")
    refused(["data", "mult", "--out", "file/data"], "cannot be created: file is a file")
    if os.geteuid() != 0:  # root may write anywhere
        (tmp_path / "locked").mkdir(mode=0o500)
        refused(["pretrain", *TINY, "--out", "locked/run"], "no write permission")
    assert sorted(os.listdir(tmp_path)) == ["file", "locked"] if os.geteuid() != 0 else ["file"]


def test_a_failed_start_leaves_nothing_that_blocks_the_retry(tmp_path, monkeypatch):
    out = tmp_path / "a" / "run"
    import rlntp.training.pretrain as stage

    def broken(*args, **kwargs):
        raise RuntimeError("simulated failure while building the model")
    with monkeypatch.context() as m:
        m.setattr(stage, "build_model", broken)
        with pytest.raises(RuntimeError):
            main(["pretrain", *TINY, "--steps", "3", "--out", str(out)])
    assert not (tmp_path / "a").exists()  # the directories it created are gone again
    (tmp_path / "empty").mkdir()
    with monkeypatch.context() as m:
        m.setattr(stage, "build_model", broken)
        with pytest.raises(RuntimeError):
            main(["pretrain", *TINY, "--steps", "3", "--out", str(tmp_path / "empty")])
    assert os.listdir(tmp_path / "empty") == []  # the user's empty directory stays, empty
    main(["pretrain", *TINY, "--steps", "3", "--eval-every", "3", "--out", str(out)])  # the plain retry
    assert checkpoints.checkpoint_steps(out) == [3]


def test_resume_with_fewer_steps_is_refused(tmp_path, refused):
    out = tmp_path / "run"
    main(["pretrain", *TINY, "--steps", "6", "--save-every", "3", "--out", str(out)])
    config = (out / "config.json").read_bytes()
    refused(["pretrain", *TINY, "--steps", "4", "--save-every", "3", "--out", str(out), "--resume"],
           "already reached step 6; --steps 4 would discard training; pass --steps 6 or more")
    assert (out / "config.json").read_bytes() == config


def test_a_damaged_checkpoint_is_named_as_damaged(tmp_path, refused):
    out = tmp_path / "run"
    main(["pretrain", *TINY, "--steps", "6", "--save-every", "3", "--eval-every", "3", "--out", str(out)])
    weights = checkpoints.checkpoint_path(out, 6) / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte inside the tensor data: still a valid safetensors file
    weights.write_bytes(bytes(data))
    load_file(weights)  # loads without complaint: only the checksum tells
    message = "step_0000006 is damaged: model.safetensors differs from the checksum"
    refused(["eval", str(out), "--device", "cpu"], message)
    refused(["posttrain", "--from", str(out), "--device", "cpu", "--out", str(tmp_path / "post")], message)
    assert not (tmp_path / "post").exists()
    refused(["pretrain", *TINY, "--steps", "9", "--save-every", "3", "--eval-every", "3", "--out", str(out),
                    "--resume"], message)
    main(["eval", str(out), "--step", "3", "--device", "cpu", "--samples", "16"])  # the one before is fine


def test_damaged_run_files_are_one_line_naming_file_and_line(tmp_path, capsys, refused):
    out = tmp_path / "run"
    main(["pretrain", *TINY, "--steps", "4", "--save-every", "2", "--eval-every", "2", "--out", str(out)])
    lines = (out / "metrics.jsonl").read_text().splitlines()
    (out / "metrics.jsonl").write_text("\n".join([lines[0], "[1, 2]", *lines[1:]]) + "\n")
    refused(["plot", str(out)], "metrics.jsonl, line 2: not a metrics record")
    refused(["pretrain", *TINY, "--steps", "6", "--save-every", "2", "--eval-every", "2", "--out", str(out),
                    "--resume"], "metrics.jsonl, line 2")
    (out / "metrics.jsonl").write_text("\n".join([lines[0], '{"step": 2}', *lines[2:]]) + "\n")
    refused(["plot", str(out)], "metrics.jsonl, line 2: no number for eval/greedy_acc")
    (out / "metrics.jsonl").write_text("\n".join(lines) + "\n" + '{"step": 6, "samp')  # a torn last line is fine
    main(["plot", str(out)])
    capsys.readouterr()
    good = (out / "config.json").read_bytes()
    for damage, message in ((b"\xff\xfe not utf-8", "is not valid JSON"), (b"[1, 2]", "is not an rlntp run config"),
                            (good.replace(b'"model"', b'"modle"'), "has no valid 'model' entry"),
                            (good.replace(b'"layers": 1', b'"layers": "one"'), "layers must be a whole number")):
        (out / "config.json").write_bytes(damage)
        for argv in (["eval", str(out), "--device", "cpu"], ["plot", str(out)],
                     ["pretrain", *TINY, "--steps", "6", "--out", str(out), "--resume"]):
            refused(argv, message)
    (out / "config.json").write_bytes(good)
    state = checkpoints.checkpoint_path(out, 4) / "trainer_state.json"
    state.write_text('{"step": "four"}')
    refused(["eval", str(out), "--device", "cpu"], "is not a checkpoint state")


def test_a_non_finite_loss_stops_the_run_and_keeps_its_checkpoints(tmp_path, refused):
    run = PretrainRun(train=PretrainConfig(steps=40, batch_size=16, lr=1e30, eval_every=2, save_every=1,
                                           eval_samples=16, device="cpu"))
    run = PretrainRun(run.task.__class__(d=6), run.model.__class__(layers=1, width=16, heads=2), run.train)
    with pytest.raises(Diverged, match=r"at step \d+; the run stopped"):
        pretrain(run, tmp_path / "run", progress=False)
    kept = checkpoints.checkpoint_steps(tmp_path / "run")
    for step in kept:  # every checkpoint written holds finite weights
        assert all(torch.isfinite(t).all() for t in load_file(checkpoints.checkpoint_path(tmp_path / "run", step)
                                                               / "model.safetensors").values())
    refused(["pretrain", *TINY, "--steps", "40", "--lr", "1e30", "--out", str(tmp_path / "cli")],
           "the run stopped", code=1)


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK).write_text("pid 1 on elsewhere since 2026-01-01 00:00:00: rlntp pretrain (killed)\n")
    main(["pretrain", *TINY, "--steps", "3", "--eval-every", "3", "--out", str(out)])
    assert checkpoints.checkpoint_steps(out) == [3]
    config = dirs.read_config(out)
    with dirs.open_run_dir(out, config, resume=True, resumable_changes=set(), steps=3):
        with pytest.raises(RunDirError, match=rf"in use by another rlntp process \(pid {os.getpid()} on "):
            with dirs.open_run_dir(out, config, resume=True, resumable_changes=set(), steps=3):
                pass


@pytest.mark.integration
def test_a_second_process_is_refused_while_the_first_finishes(tmp_path, pause):
    out = tmp_path / "run"
    argv = ["pretrain", *TINY, "--steps", "1000", "--eval-every", "250", "--save-every", "250", "--out", str(out)]
    first = _cli(*argv, env=pause.env(250))  # holds its directory, paused at step 250
    pause.wait(250, first)
    second = subprocess.run([sys.executable, "-m", "rlntp.cli", *argv, "--resume"], capture_output=True, text=True)
    pause.release(250)
    assert second.returncode == 2, second.stderr
    assert second.stderr.startswith(f"error: {out} is in use by another rlntp process (pid {first.pid} on ")
    assert len(second.stderr.strip().splitlines()) == 1
    assert first.wait() == 0, first.stderr.read()
    assert [r["step"] for r in metrics.read_metrics(out)] == list(range(0, 1001, 250))
    assert checkpoints.checkpoint_steps(out) == list(range(250, 1001, 250))


@pytest.mark.integration
def test_ctrl_c_is_one_line_and_resume_matches_an_uninterrupted_run(tmp_path, pause):
    argv = ["pretrain", *TINY, "--steps", "300", "--eval-every", "50", "--save-every", "50"]
    full = tmp_path / "full"
    assert _cli(*argv, "--out", str(full)).wait() == 0
    cut = tmp_path / "cut"
    process = _cli(*argv, "--out", str(cut), env=pause.env(100))
    pause.wait(100, process)  # the Ctrl-C lands at step 100, whatever the machine's speed
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert err.strip().splitlines() == ["error: interrupted at step 100; continue with --resume"], err
    resumed = _cli(*argv, "--out", str(cut), "--resume")
    assert resumed.wait() == 0, resumed.stderr.read()
    for name, tensor in load_file(checkpoints.checkpoint_path(full, 300) / "model.safetensors").items():
        assert torch.equal(tensor, load_file(checkpoints.checkpoint_path(cut, 300) / "model.safetensors")[name]), name
    drop = ("perf/tokens_per_s", "perf/step_s")
    strip = [{k: v for k, v in r.items() if k not in drop} for r in metrics.read_metrics(full)]
    assert [{k: v for k, v in r.items() if k not in drop} for r in metrics.read_metrics(cut)] == strip
    assert json.loads((cut / "config.json").read_text()) == json.loads((full / "config.json").read_text())


def test_a_run_that_recorded_no_threads_is_not_resumed_as_if_it_had_one(tmp_path, refused):
    out = tmp_path / "run"
    main(["pretrain", *TINY, "--steps", "2", "--save-every", "2", "--eval-every", "2", "--out", str(out)])
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["threads"] == 1
    del config["train"]["threads"]  # as written before runs recorded their threads
    (out / "config.json").write_text(json.dumps(config))
    refused(["pretrain", *TINY, "--steps", "4", "--save-every", "2", "--eval-every", "2", "--out", str(out),
             "--resume"], "train.threads")


def test_a_checkpoint_without_checksums_is_refused_unless_allowed(tmp_path, capsys, refused):
    out = tmp_path / "run"
    main(["pretrain", *TINY, "--steps", "4", "--save-every", "2", "--eval-every", "2", "--out", str(out)])
    state_file = checkpoints.checkpoint_path(out, 4) / "trainer_state.json"
    state = json.loads(state_file.read_text())
    del state["sha256"]
    state_file.write_text(json.dumps(state))
    capsys.readouterr()
    refused(["eval", str(out), "--device", "cpu", "--samples", "16"], "records no checksums")
    refused(["pretrain", *TINY, "--steps", "6", "--save-every", "2", "--eval-every", "2", "--out", str(out),
                    "--resume"], "pass --allow-unverified to load it anyway")
    refused(["posttrain", "--from", str(out), "--device", "cpu", "--steps", "2", "--quiet",
                    "--out", str(tmp_path / "rl")], "records no checksums")
    main(["eval", str(out), "--device", "cpu", "--samples", "16", "--allow-unverified"])
    main(["pretrain", *TINY, "--steps", "6", "--save-every", "2", "--eval-every", "2", "--out", str(out), "--resume",
          "--allow-unverified"])
    assert checkpoints.checkpoint_steps(out) == [2, 4, 6]


@pytest.mark.integration
def test_a_resume_that_changes_how_steps_run_records_from_which_step(tmp_path, pause):
    """Resuming with another --step-impl (pre-training killed at step 4) or --decode (post-training) is allowed:
    config.json keeps the value the run started with, records each change with the step from which it holds and
    each stretch as it ran; a resume that changes nothing adds nothing."""
    out = tmp_path / "run"
    argv = ["pretrain", *TINY, "--eval-every", "2", "--save-every", "2", "--out", str(out)]
    process = _cli(*argv, "--steps", "8", "--step-impl", "grouped", env=pause.env(4))
    pause.wait(4, process)
    process.kill()
    process.wait()
    main([*argv, "--steps", "8", "--step-impl", "static", "--resume"])
    main([*argv, "--steps", "10", "--step-impl", "grouped", "--resume"])
    main([*argv, "--steps", "12", "--step-impl", "grouped", "--resume"])  # nothing changed: nothing recorded
    config = json.loads((out / "config.json").read_text())
    assert (config["train"]["step_impl"], config["train"]["steps"]) == ("grouped", 12)
    assert config["changes"] == [{"step": 4, "field": "train.step_impl", "from": "grouped", "to": "static"},
                                 {"step": 8, "field": "train.step_impl", "from": "static", "to": "grouped"}]
    assert [(s["step"], s["step_impl"]) for s in config["ran"]] == [(0, "grouped"), (4, "static"), (8, "grouped")]
    # each evaluation with what trained up to it: step 4's was taken before the kill, by the grouped steps
    assert [history.as_of(config, step)[0]["train.step_impl"] for step in (0, 4, 6, 8, 10)] == [
        "grouped", "grouped", "static", "static", "grouped"]

    rl = tmp_path / "rl"
    post = ["posttrain", "--from", str(out), "--device", "cpu", "--eval-every", "2", "--save-every", "2", "--quiet",
            "--eval-samples", "16", "--prompts-per-step", "2", "--rollouts-per-prompt", "2", "--out", str(rl)]
    main([*post, "--steps", "2"])
    main([*post, "--steps", "4", "--decode", "static", "--resume"])
    config = json.loads((rl / "config.json").read_text())
    assert config["post"]["decode"] == "shared"
    assert config["changes"] == [{"step": 2, "field": "post.decode", "from": "shared", "to": "static"}]
    assert [(s["step"], s["decode"]) for s in config["ran"]] == [(0, "shared"), (2, "static")]


def test_a_resume_replaces_the_record_of_the_steps_it_runs_again():
    """What ran past the checkpoint a run resumes from is run again, so its record goes; at step 0 the run starts
    over with the options given."""
    ran = {"packed": 1, "step_impl": "grouped"}
    saved = {"train": {"step_impl": "grouped", "steps": 8},
             "changes": [{"step": 4, "field": "train.step_impl", "from": "grouped", "to": "static"}],
             "ran": [{"step": 0} | ran, {"step": 4, "packed": 2, "step_impl": "static"}]}
    given = {"train": {"step_impl": "grouped", "steps": 8}}
    assert history.continued(saved, given, 4, {"train.step_impl"}, ran) == given | {"ran": [{"step": 0} | ran]}
    static = {"train": {"step_impl": "static", "steps": 8}}
    assert history.continued(saved, static, 0, {"train.step_impl"}, ran) == static | {"ran": [{"step": 0} | ran]}
    with pytest.raises(RunDirError, match="'ran' entry is not a list"):
        history.continued(saved | {"ran": {"step": 0}}, given, 4, {"train.step_impl"}, ran)
