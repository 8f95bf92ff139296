"""The LLM path end to end on the tiny preset (a random tiny Llama) on real GSM8K and MATH records (samples shipped in
tests/data/real): the wiring, not the science."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlntp.llm.sft import epoch_checkpoints

pytestmark = pytest.mark.integration

REAL = Path(__file__).parent / "data" / "real"
GSM8K = ["--source", str(REAL / "gsm8k_train.jsonl"), "--test-source", str(REAL / "gsm8k_test.jsonl")]


def reproduce(*argv: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rlntp.cli", "reproduce", *argv], capture_output=True, text=True,
                          timeout=timeout, env=None if env is None else os.environ | env)


@pytest.fixture(scope="module")
def gsm8k_tiny(tmp_path_factory):
    out = tmp_path_factory.mktemp("gsm8k") / "run"
    result = reproduce("gsm8k", "--preset", "tiny", *GSM8K, "--device", "cpu", "--out", str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result.stdout


def test_tiny_gsm8k_sft_loss_falls_and_every_checkpoint_is_evaluated(gsm8k_tiny):
    out, stdout = gsm8k_tiny
    assert "proves the wiring" in stdout and "not the paper's claims" in stdout
    rows = json.loads((out / "results.json").read_text())["rows"]
    for p_cot in (0.25, 1.0):
        done = json.loads((out / "sft" / f"p={p_cot:g}" / "done.json").read_text())
        losses = [loss for _, loss in done["loss"]]
        assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3  # the loss falls
        assert sorted(r["epoch"] for r in rows if r["stage"] == "sft" and r["p_cot"] == p_cot) == list(range(1, 5))
    metrics = json.loads((out / "eval" / "sft,p=0.25,epoch=4.json").read_text())
    for key in ("accuracy", "mean_length", "long_frac", "reward", "rewards/answer_tag", "rewards/think_tag",
                "rewards/correct_anywhere", "rewards/correct_in_answer"):
        assert 0 <= metrics[key] < float("inf"), key
    assert metrics["responses"] == 2 * metrics["questions"] == 32 and metrics["mean_length"] > 0
    assert metrics["accuracy"] == metrics["correct"] / 32 and isinstance(metrics["correct"], int)  # the count too
    responses = (out / "eval" / "sft,p=0.25,epoch=4.responses.jsonl").read_text().splitlines()
    assert len(responses) == 32 and {"response", "answer", "length", "correct_in_answer"} <= set(json.loads(responses[0]))
    assert (out / "llm.png").stat().st_size > 10_000
    claims = json.loads((out / "report.json").read_text())["claims"]  # evaluated, and never passed off as the paper's
    assert len(claims) == 4 and all(c["verdict"] == "not evaluated" for c in claims)
    assert all(c["evidence"].startswith(("wiring only: ", "could not be evaluated")) for c in claims)
    record = json.loads((out / "report.json").read_text())
    assert "--source" in record["command"] and record["settings"]["source"].endswith("gsm8k_train.jsonl")
    source = next(row for row in record["provenance"] if row["setting"] == "source")
    assert source["note"] == "--source on the command line"


def test_tiny_gsm8k_trains_on_the_real_records(gsm8k_tiny):
    out, _ = gsm8k_tiny
    manifest = json.loads((out / "data" / "p=0.25" / "manifest.json").read_text())
    assert manifest["rows"] == {"sft": 100, "rl": 100, "test": 100}
    assert manifest["unsplittable"] == {"train": [], "test": []}
    train = [json.loads(line) for line in (REAL / "gsm8k_train.jsonl").read_text().splitlines()]
    from rlntp.llm.dataset import read_split

    sft = read_split(out / "data" / "p=1", "sft").to_list()
    assert all(row["prompt"].endswith("Assistant: ") for row in sft)
    assert {row["answer"] for row in sft} <= {r["answer"].rpartition("####")[2].strip() for r in train}
    assert not (out / "records").exists()  # no synthetic records were made


def test_tiny_gsm8k_completion_analysis_and_examples(gsm8k_tiny):
    """Figs. 22-31 as the tiny run can show them: the measures per GRPO checkpoint, the figure, and responses to one
    question before, during and after GRPO on the report page, beside the paper's statements."""
    out, stdout = gsm8k_tiny
    assert "completions during GRPO" in stdout
    for epoch in (1, 4):
        analysis = json.loads((out / "analysis" / f"grpo,p=0.25,epoch={epoch}.json").read_text())
        assert [row["step"] for row in analysis["steps"]] == [0, 2, 4]
        for row in analysis["steps"]:
            assert row["responses"] == 32 and row["loglik_sft"] < 0 and 0 <= row["far_frac"] <= 1
            assert len(row["length_values"]) == 32
        assert analysis["steps"][0]["loglik_self"] == analysis["steps"][0]["loglik_sft"]  # step 0 is the SFT model
        assert analysis["sft_data"]["long_targets"] > 0 and analysis["sft_data"]["loglik_long"] < 0
    assert (out / "completions.png").stat().st_size > 10_000
    examples = json.loads((out / "examples.json").read_text())
    assert [item["step"] for item in examples["items"]] == [0, 2, 4]
    assert [item["paper"][:7] for item in examples["items"]] == ["Fig. 22", "Fig. 23", "Fig. 24"]
    assert len({item["question"] for item in examples["items"]}) == 1
    from rlntp.report import write_report

    page = write_report(out).read_text()
    assert "completions during GRPO from SFT epoch 1" in page and "Fig. 23: as RL progresses" in page


def test_tiny_gsm8k_grpo_runs_steps_that_change_the_weights(gsm8k_tiny):
    out, _ = gsm8k_tiny
    rows = json.loads((out / "results.json").read_text())["rows"]
    for epoch in (1, 4):
        run = out / "grpo" / f"p=0.25,epoch={epoch}"
        log = [h for h in json.loads((run / "done.json").read_text())["log"] if "reward" in h]
        assert len(log) == 4 and all("rewards/correct_in_answer/mean" in h for h in log)
        start = load_file(epoch_checkpoints(out / "sft" / "p=0.25")[epoch] / "model.safetensors")
        end = load_file(run / "checkpoint-4" / "model.safetensors")
        assert any((start[k] - end[k]).abs().max() > 0 for k in start), "GRPO left the weights unchanged"
        steps = [r for r in rows if r["stage"] == "grpo" and r["epoch"] == epoch]
        assert [r["step"] for r in steps] == [2, 4] and steps[0]["sequences"] < steps[1]["sequences"]


def test_tiny_gsm8k_rerun_resumes_without_work(gsm8k_tiny):
    out, _ = gsm8k_tiny
    before = (out / "results.json").read_text()
    result = reproduce("gsm8k", "--preset", "tiny", *GSM8K, "--device", "cpu", "--out", str(out), "--quiet",
                       timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (out / "results.json").read_text() == before
    other = reproduce("gsm8k", "--preset", "tiny", "--device", "cpu", "--out", str(out), "--quiet")
    assert other.returncode == 2 and "with other settings" in other.stderr  # other records: not this directory


def test_status_on_the_tiny_recipe_directory_names_every_job_and_what_a_kill_left(gsm8k_tiny, tmp_path):
    """`rlntp reproduce gsm8k --status` on the tiny recipe's directory: its 21 jobs (mixtures, model, SFT, their
    evaluations, GRPO, theirs, the completion analyses) done; on a copy where a GRPO run lost its done record (killed
    after its checkpoints) and an evaluation its file, those two read as partial and pending, and nothing is written;
    another recipe's --status on it is refused in one line."""
    import shutil

    out, _ = gsm8k_tiny
    result = reproduce("gsm8k", "--preset", "tiny", *GSM8K, "--status", "--out", str(out))
    assert result.returncode == 0 and result.stdout.startswith(f"{out}: 21 runs: 21 done"), result.stdout
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    (copy / "grpo" / "p=0.25,epoch=1" / "done.json").unlink()
    (copy / "eval" / "grpo,p=0.25,epoch=4,step=4.json").unlink()
    before = sorted((p.relative_to(copy), p.stat().st_mtime_ns) for p in copy.rglob("*"))
    result = reproduce("gsm8k", "--preset", "tiny", *GSM8K, "--status", "--out", str(copy))
    assert result.returncode == 0 and result.stdout.startswith(f"{copy}: 21 runs: 19 done, 1 partial, 1 pending")
    assert "  partial  grpo/p=0.25,epoch=1\n" in result.stdout, result.stdout
    assert "  pending  eval/grpo,p=0.25,epoch=4,step=4" in result.stdout, result.stdout
    assert sorted((p.relative_to(copy), p.stat().st_mtime_ns) for p in copy.rglob("*")) == before
    other = reproduce("math", "--preset", "tiny", "--status", "--out", str(copy))
    assert other.returncode == 2 and "is the directory of the 'gsm8k' recipe" in other.stderr, other.stderr


def test_parity_path_never_imports_the_llm_stack():
    """(accelerate is left out: transformers imports it itself where it is installed.)"""
    code = ("import sys; from rlntp.cli import main; main(['sample', '--n', '2']); "
            "import rlntp.experiments.fig1, rlntp.training.posttrain; "
            "print(sorted(m for m in ('trl', 'math_verify', 'vllm', 'deepspeed') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.parametrize("dataset, preset", [(d, p) for d in ("gsm8k", "math") for p in ("tiny", "paper")])
@pytest.mark.unit
def test_every_preset_is_valid_for_our_options_and_trls(dataset, preset, tmp_path):
    from rlntp.experiments import recipes
    from rlntp.llm.evaluate import LLMEvalConfig
    from rlntp.llm.grpo import GRPOConfig, trl_config
    from rlntp.llm.sft import SFTConfig

    p = recipes()[dataset].presets[preset].settings
    SFTConfig(model="m", data=tmp_path, **p.sft)
    LLMEvalConfig(model="m", data=tmp_path, **p.eval)
    config = trl_config(GRPOConfig(model="m", data=tmp_path, **p.grpo, cpu=True), tmp_path / "grpo", bf16=False,
                        progress=False)
    assert (config.num_generations, config.beta, config.loss_type, config.scale_rewards) == (
        p.grpo["group_size"], 0.0, "grpo", "group")
    assert config.max_completion_length == p.grpo["max_completion_length"] and config.num_iterations == 1
    assert set(p.rl_from_epochs) <= set(range(1, p.sft["epochs"] + 1)) and 1.0 in p.p_cots


def test_grpo_batch_not_divisible_by_the_group_is_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", "llm", "grpo", "--model", "m", "--data", str(tmp_path),
                             "--group-size", "3", "--completions-per-device", "8", "--out", str(tmp_path / "o")],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr


@pytest.mark.skipif(not torch.cuda.is_available() or importlib.util.find_spec("vllm") is None,
                    reason="needs a CUDA GPU and vLLM")
def test_grpo_on_gpu_in_bf16_with_vllm_rollouts(tiny_model, tmp_path):
    from rlntp.llm.dataset import LLMDataConfig, make_dataset
    from rlntp.llm.grpo import GRPOConfig, run_grpo
    from rlntp.llm.tiny import gsm8k_records

    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(64)))
    make_dataset(LLMDataConfig(source=str(records), p_cot=0.25), tmp_path / "data")
    done = run_grpo(GRPOConfig(model=str(tiny_model), data=tmp_path / "data", steps=2, group_size=4,
                                completions_per_device=8, max_completion_length=32, save_every=2, precision="bf16",
                                vllm="colocate"), tmp_path / "grpo", progress=False)
    assert len([h for h in done["log"] if "reward" in h]) == 2


@pytest.mark.parametrize("argv, message", [
    (["--preset", "paper"], "HF_HUB_OFFLINE is set and the dataset 'openai/gsm8k' is not in the local cache"),
    (["--preset", "paper", *GSM8K], "HF_HUB_OFFLINE is set and the model 'meta-llama/Llama-3.2-3B' is not in"),
    (["--source", str(REAL / "gsm8k_train.jsonl")], "is a local file: pass the test records too (--test-source"),
    (["--source", "missing.jsonl", "--test-source", "x.jsonl"], "--source missing.jsonl: no such file"),
    (["--test-source", str(REAL / "gsm8k_test.jsonl")], "--test-source needs --source"),
    (["--data", "d", "--source", "s.jsonl"], "pass either --data or --source/--test-source"),
    (["--data", str(REAL)], "is not a dataset made by `rlntp llm data`"),
])
def test_records_that_cannot_be_read_fail_in_one_line_before_the_directory_is_made(tmp_path, argv, message):
    out = tmp_path / "out"
    result = reproduce("gsm8k", *argv, "--out", str(out), env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and message in result.stderr, result.stderr
    assert not out.exists()


def test_a_git_lfs_pointer_is_named_as_such(tmp_path):
    pointer = tmp_path / "train.jsonl"
    pointer.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    result = reproduce("gsm8k", "--source", str(pointer), "--test-source", str(pointer), "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "is a Git LFS pointer" in result.stderr and result.stderr.count("\n") == 1


@pytest.mark.unit
def test_an_unreachable_hub_fails_in_one_line_without_retries(monkeypatch):
    """A hub that refuses the connection (no network) is asked once: a ConfigError naming the model, no retry loop."""
    from rlntp.errors import ConfigError
    from rlntp.llm.common import check_on_hub

    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", False)
    monkeypatch.setattr("huggingface_hub.constants.ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(ConfigError, match="cannot reach the model 'org/model' on the Hugging Face hub"):
        check_on_hub("org/model", "model", "pass a local copy")
