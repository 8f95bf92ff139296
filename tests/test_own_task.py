"""A task of your own (examples/tasks/mod3.py: the sum of d digits modulo 3) through every stage, with no change to
rlntp; and the paper's finding on it: next-token prediction leaves greedy decoding at chance, GRPO after it
answers long and right."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rlntp.cli import main
from rlntp.runs import metrics

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[1]
MOD3 = str(ROOT / "examples" / "tasks" / "mod3.py") + ":SumMod3Task"
SMALL = ["--width", "32", "--layers", "2", "--heads", "2", "--device", "cpu", "--quiet"]


@pytest.mark.unit
def test_sample_prints_the_tasks_own_lines(capsys):
    main(["sample", "--task", MOD3, "--d", "6", "--p-cot", "1", "--n", "3", "--seed", "1"])
    lines = capsys.readouterr().out.splitlines()
    for line in lines:
        tokens = line.split()
        digits, outputs = [int(t) for t in tokens[:6]], tokens[6:]
        running = [str(sum(digits[: i + 1]) % 3) for i in range(6)]
        assert outputs == running + ["EOS"]


def test_every_stage_takes_it(tmp_path, capsys):
    data, pre = tmp_path / "data", tmp_path / "pre"
    main(["data", "sample", "--task", MOD3, "--d", "5", "--p-cot", "0.5", "--train", "256", "--valid", "8", "--test",
          "64", "--out", str(data)])
    manifest = json.loads((data / "manifest.json").read_text())
    assert manifest["task"] == "mod3" and manifest["splits"]["train"]["rows"] == 256
    main(["pretrain", "--task", MOD3, "--d", "5", "--p-cot", "0.5", "--data", str(data), "--steps", "4",
          "--batch-size", "32", "--eval-every", "2", "--eval-samples", "64", "--save-every", "4", *SMALL,
          "--out", str(pre)])
    assert json.loads((pre / "config.json").read_text())["task"]["task"] == MOD3  # absolute: found from anywhere
    for reward in ("e2e", "cot", "length"):
        main(["posttrain", "--from", str(pre), "--algo", "grpo", "--reward", reward, "--steps", "2", "--eval-every",
              "2", "--eval-samples", "32", "--save-every", "2", "--out", str(tmp_path / reward), "--quiet"])
        assert [r["step"] for r in metrics.read_metrics(tmp_path / reward)] == [0, 2]
    main(["posttrain", "--from", str(pre), "--algo", "star", "--steps", "1", "--eval-every", "1", "--eval-samples",
          "32", "--save-every", "1", "--out", str(tmp_path / "star"), "--quiet"])
    capsys.readouterr()
    main(["eval", str(tmp_path / "e2e"), "--samples", "32", "--json"])
    assert 0 <= json.loads(capsys.readouterr().out)["eval/greedy_acc"] <= 1
    main(["plot", str(pre)])
    assert (pre / "plot.png").stat().st_size > 5_000


def test_a_sweep_takes_it_relative_to_the_sweep_file(tmp_path):
    import rlntp

    tasks = tmp_path / "tasks"
    tasks.mkdir()
    (tasks / "mine.py").write_text((ROOT / "examples" / "tasks" / "mod3.py").read_text())
    spec = {"pretrain": {"task": {"task": "tasks/mine.py:SumMod3Task", "d": 4},
                         "model": {"layers": 1, "width": 16, "heads": 2},
                         "train": {"steps": 2, "batch_size": 8, "eval_every": 2, "eval_samples": 16, "save_every": 2},
                         "axes": {"task.p_cot": [0.1, 0.9]}}}
    (tmp_path / "sweep.json").write_text(json.dumps(spec))
    table = rlntp.sweep(tmp_path / "sweep.json", tmp_path / "out", progress=False)
    assert table["run"].nunique() == 2
    assert set(table["task.task"]) == {f"{tasks / 'mine.py'}:SumMod3Task"}


@pytest.mark.unit
def test_a_class_missing_part_of_the_interface_is_one_line(tmp_path, refused):
    half = tmp_path / "half.py"
    half.write_text("from rlntp.tasks.base import Task\n\nclass Half(Task):\n    name = 'half'\n")
    refused(["sample", "--task", f"{half}:Half"], "Half does not implement is_correct, is_valid_cot, long_len")
    refused(["sample", "--task", f"{half}:Other"], "has no 'Other'")
    refused(["sample", "--task", f"{tmp_path / 'none.py'}:X"], "does not exist")
    refused(["sample", "--task", "math:pi"], "is not a subclass of rlntp.tasks.base.Task")
    (tmp_path / "broken.py").write_text("import not_a_module\n")
    refused(["sample", "--task", f"{tmp_path / 'broken.py'}:X"], "does not import: ModuleNotFoundError")
    raising = tmp_path / "raising.py"
    raising.write_text((ROOT / "examples" / "tasks" / "mod3.py").read_text())
    refused(["sample", "--task", f"{raising}:SumMod3Task", "--d", "1"], "mod3: d must be an integer in [2, 1000]")


def test_an_installed_packages_entry_point_names_it(tmp_path):
    package = tmp_path / "mod3pkg"
    package.mkdir()
    (package / "__init__.py").write_text((ROOT / "examples" / "tasks" / "mod3.py").read_text())
    info = tmp_path / "mod3pkg-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mod3pkg\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[rlntp.tasks]\nmod3 = mod3pkg:SumMod3Task\n")
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", "sample", "--task", "mod3", "--d", "4", "--n", "2"],
                            capture_output=True, text=True, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert result.returncode == 0, result.stderr
    assert len(result.stdout.splitlines()) == 2 and result.stdout.split()[0] in "012"


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.science
def test_grpo_after_ntp_takes_greedy_accuracy_from_chance_to_the_long_answer(tmp_path, pretrained_to_calibration,
                                                                            seed):
    """At p_cot = 0.15, below mod 3's greedy threshold of 1/4 (docs/tasks.md), pre-training continues until the
    long path is learned (sampled answers long with probability 0.15 and right with 0.15 + 0.85/3, 2,000
    evaluations); greedy decoding is then at chance, and GRPO from that checkpoint answers long and right."""
    from conftest import calibrated

    p_cot = 0.15
    post = tmp_path / "grpo"
    argv = ["pretrain", "--task", MOD3, "--d", "8", "--p-cot", str(p_cot), "--width", "64", "--layers", "2",
            "--heads", "4", "--batch-size", "128", "--lr", "1e-3", "--eval-samples", "2000", "--seed", str(seed),
            "--device", "cpu", "--quiet"]
    pre, step, ready = pretrained_to_calibration(argv, p_cot, chunk=500, cap=8000,
                                                 ready=calibrated(p_cot, accuracy=p_cot + (1 - p_cot) / 3))
    chance = 1 / 3
    assert abs(ready["eval/greedy_acc"] - chance) < 3 * (chance * (1 - chance) / 2000) ** 0.5 + 0.02
    assert ready["eval/greedy_len_median"] == 1  # greedy stays on the short path
    main(["posttrain", "--from", str(pre), "--algo", "grpo", "--reward", "e2e", "--steps", "40", "--eval-every",
          "10", "--eval-samples", "640", "--save-every", "40", "--seed", str(seed), "--out", str(post), "--quiet"])
    last = metrics.read_metrics(post)[-1]
    print(f"seed {seed}: ready at step {step}: greedy {ready['eval/greedy_acc']:.3f}, sampled "
          f"{ready['eval/sampled_acc']:.3f} (long {ready['eval/sampled_long_frac']:.3f}); after GRPO greedy "
          f"{last['eval/greedy_acc']:.3f}, length {last['eval/greedy_len_median']:g}")
    assert last["eval/greedy_acc"] >= 0.9 and last["eval/greedy_len_median"] == 8, (step, last)
