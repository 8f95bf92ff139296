"""GSM8K/MATH records -> the paper's prompt and target strings, the mixture's halves, and the SFT loss mask."""

import json
import os
import subprocess
import sys

import datasets
import pytest

from rlntp.errors import ConfigError
from rlntp.llm.dataset import LLMDataConfig, make_dataset, read_split
from rlntp.tasks.math_text import DATASETS, last_boxed, make_mixture, split_gsm8k, split_math, to_example

pytestmark = pytest.mark.integration

GSM8K = {"question": "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
                     "How many clips did Natalia sell altogether in April and May?",
         "answer": "Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = <<48+24=72>>72 clips "
                   "altogether in April and May.\n#### 72"}
MATH = {"problem": "Simplify $\\sqrt{8}\\cdot\\frac{1}{2}$.",
        "solution": "We have $\\sqrt{8} = 2\\sqrt{2}$, so the product is $\\boxed{\\frac{2\\sqrt{2}}{2}}$ "
                    "which is $\\boxed{\\sqrt{\\frac{{4}}{2}}}$."}


def test_gsm8k_record_becomes_the_papers_prompt_and_target():
    long = to_example(DATASETS["gsm8k"], GSM8K["question"], GSM8K["answer"], long=True)
    short = to_example(DATASETS["gsm8k"], GSM8K["question"], GSM8K["answer"], long=False)
    assert long["prompt"] == (
        "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. The "
        "assistant first thinks about the reasoning process in the mind and then provides the user with the answer. "
        "The reasoning process and answer are enclosed within <think></think> and <answer></answer> tags, "
        "respectively, i.e., <think>reasoning process here</think> <answer>answer here</answer>. User: Natalia sold "
        "clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips did "
        "Natalia sell altogether in April and May? Assistant: ")
    assert long["completion"] == ("<think>Natalia sold 48/2 = <<48/2=24>>24 clips in May.\nNatalia sold 48+24 = "
                                  "<<48+24=72>>72 clips altogether in April and May.</think> <answer>72</answer>")
    assert short["completion"] == "<think></think> <answer>72</answer>"
    assert short["prompt"] == long["prompt"] and long["answer"] == "72"


def test_math_answer_is_the_last_box_with_nested_braces():
    assert split_math(MATH["solution"]) == (
        "We have $\\sqrt{8} = 2\\sqrt{2}$, so the product is $\\boxed{\\frac{2\\sqrt{2}}{2}}$ which is $",
        "\\sqrt{\\frac{{4}}{2}}")
    assert last_boxed("no box") is None and last_boxed("\\boxed{\\frac{1}{2}") is None  # never closes
    assert split_math("$\\boxed{ }$") is None
    assert split_gsm8k("no marker") is None and split_gsm8k("cot #### ") is None
    assert split_gsm8k("a #### b #### 7") == ("a #### b", "7")


def test_math_prompt_renders_as_the_papers_llama_chat_string(tiny_model):
    from transformers import AutoTokenizer

    example = to_example(DATASETS["math"], MATH["problem"], MATH["solution"], long=False)
    assert example["completion"] == [{"role": "assistant", "content": "<think></think> <answer>\\sqrt{\\frac{{4}}{2}}"
                                                                      "</answer>"}]
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)  # the Llama 3.1 instruct template, its default date
    rendered = tokenizer.apply_chat_template(example["prompt"], add_generation_prompt=True, tokenize=False)
    assert rendered == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: 26 Jul 2024\n\nA conversation between User and Assistant. The user asks a question, and the "
        "Assistant solves it. The assistant first thinks about the reasoning process in the mind and then provides "
        "the user with the answer. The reasoning process and answer are enclosed within <think></think> and "
        "<answer></answer> tags, respectively, i.e., <think>reasoning process here</think> <answer>answer "
        "here</answer>. Inside the answer tag, put only the answer and no additional commentary.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nSimplify $\\sqrt{8}\\cdot\\frac{1}{2}$.<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")


def test_mixture_halves_are_seeded_disjoint_and_nested_in_p_cot():
    records = [{"question": f"q{i}", "answer": f"c{i} #### {i}"} for i in range(400)]
    records[7] = {"question": "q7", "answer": "no final answer"}
    fmt = DATASETS["gsm8k"]
    low, high = (make_mixture(fmt, records, [], p, seed=3) for p in (0.2, 0.6))
    assert low.unsplittable == {"train": [7], "test": []}
    rows = [r["row"] for r in low.sft + low.rl]
    assert sorted(rows) == [i for i in range(400) if i != 7] and len(low.sft) - len(low.rl) in (0, 1)
    assert [r["row"] for r in low.sft] == [r["row"] for r in high.sft]  # same halves for the same seed
    long_low = {r["row"] for r in low.sft + low.rl if r["long"]}
    long_high = {r["row"] for r in high.sft + high.rl if r["long"]}
    assert long_low < long_high and abs(len(long_low) / 399 - 0.2) < 0.06 and abs(len(long_high) / 399 - 0.6) < 0.06
    other = make_mixture(fmt, records, [], 0.2, seed=4)
    assert [r["row"] for r in other.sft] != [r["row"] for r in low.sft]
    assert all((r["completion"].startswith("<think></think>")) != r["long"] for r in low.sft)


def test_data_command_writes_splits_that_datasets_and_trl_read(tmp_path):
    train = tmp_path / "train.jsonl"
    rows = [GSM8K, {"question": "broken", "answer": "no marker"}] + [
        {"question": f"What is {i} + 1?", "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(9)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    datasets.Dataset.from_list(rows[:3]).to_parquet(str(tmp_path / "test.parquet"))
    out = tmp_path / "data"
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", "llm", "data", "--dataset", "gsm8k", "--source",
                             str(train), "--test-source", str(tmp_path / "test.parquet"), "--p-cot", "0.5",
                             "--out", str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "left out 1 train record(s)" in result.stdout and "rows 1" in result.stdout
    loaded = datasets.load_dataset(str(out))
    assert set(loaded) == {"sft", "rl", "test"}
    assert len(loaded["sft"]) + len(loaded["rl"]) == 10 and len(loaded["test"]) == 2
    assert {"prompt", "completion", "answer", "long"} <= set(loaded["sft"].column_names)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["unsplittable"] == {"train": [1], "test": [1]} and manifest["config"]["p_cot"] == 0.5
    assert read_split(out, "test")[0]["completion"].startswith("<think>Natalia")  # test keeps its chain of thought


@pytest.mark.unit
def test_sft_loss_covers_the_target_only(tiny_model, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rlntp.llm.sft import tokenized_apart

    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(GSM8K) + "\n" for _ in range(4)))
    make_dataset(LLMDataConfig(source=str(records), p_cot=1.0), tmp_path / "data")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                         args=SFTConfig(output_dir=str(tmp_path / "sft"), completion_only_loss=True, use_cpu=True,
                                        bf16=False, report_to="none", activation_checkpointing=False,
                                        gradient_checkpointing=None),
                         train_dataset=tokenized_apart(read_split(tmp_path / "data", "sft"), tokenizer),
                         processing_class=tokenizer)  # the rows `rlntp llm sft` gives the trainer
    row = trainer.train_dataset[0]
    ids, labels = row["input_ids"], row["labels"]
    first = next(i for i, label in enumerate(labels) if label != -100)
    assert all(label != -100 for label in labels[first:])
    example = to_example(DATASETS["gsm8k"], GSM8K["question"], GSM8K["answer"], long=True)
    assert tokenizer.decode(ids[:first]) == "<|begin_of_text|>" + example["prompt"]
    assert tokenizer.decode(ids[first:]) == example["completion"] + "<|end_of_text|>"
    batch = trainer.data_collator([row])
    assert (batch["labels"][0, :first] == -100).all() and (batch["labels"][0, first:] == batch["input_ids"][0, first:]).all()


@pytest.mark.parametrize("args, message", [
    (["--source", "{train}", "--p-cot", "1.5"], "p_cot must be in [0, 1], got 1.5"),
    (["--source", "{nocol}"], "has no column 'answer'; gsm8k records need 'question' and 'answer'"),
    (["--source", "nobody/no-such-dataset"], "HF_HUB_OFFLINE is set and the dataset 'nobody/no-such-dataset' is not in "
                                             "the local cache"),
    (["--source", "{train}", "--dataset", "aime"], "unknown dataset 'aime'; choose one of: gsm8k, math"),
    (["--source", "missing.jsonl"], "no such file: missing.jsonl"),
])
def test_bad_data_input_is_one_line_before_any_work(tmp_path, args, message):
    (tmp_path / "train.jsonl").write_text(json.dumps(GSM8K) + "\n")
    (tmp_path / "nocol.jsonl").write_text(json.dumps({"question": "q", "solution": "s"}) + "\n")
    args = [a.format(train=tmp_path / "train.jsonl", nocol=tmp_path / "nocol.jsonl") for a in args]
    env = os.environ | {"HF_HUB_OFFLINE": "1"}  # the hub's cache only (without it: tests/test_llm_hostile.py)
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", "llm", "data", *args, "--out", str(tmp_path / "o")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr, result.stderr
    if "HF_HUB_OFFLINE" in message:
        assert "--source path/to/train.jsonl" in result.stderr
    assert not (tmp_path / "o").exists()


def test_model_that_is_not_a_causal_lm_is_refused_and_bf16_runs_on_the_cpu(tiny_model, tmp_path):
    from transformers import T5Config

    from rlntp.llm.common import check_causal_lm, use_bf16

    T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8, vocab_size=16).save_pretrained(tmp_path / "t5")
    with pytest.raises(ConfigError, match="is a t5 model with no causal language model head|not a causal"):
        check_causal_lm(str(tmp_path / "t5"))
    with pytest.raises(ConfigError, match="is not a model directory"):
        check_causal_lm(str(tmp_path))
    check_causal_lm(str(tiny_model))
    import torch

    if not torch.cuda.is_available():
        assert use_bf16("auto", cpu=False) is False  # float32 unless asked: the CPU default
    assert use_bf16("bf16", cpu=True) is True  # autocast on the CPU, as TRL's trainers default to
    assert use_bf16("fp32", cpu=False) is False and use_bf16("auto", cpu=True) is False


@pytest.mark.parametrize("extra, message", [
    (["--model", "{t5}"], "is a t5 model with no causal language model head"),
    (["--model", "{tiny}", "--precision", "fp16"], "unknown precision 'fp16'; choose one of: fp32, bf16, auto"),
    (["--model", "{tiny}", "--data", "{nodata}"], "is not a dataset made by `rlntp llm data`"),
])
def test_bad_model_precision_and_data_are_one_line_before_any_work(tiny_model, tmp_path, extra, message):
    from transformers import T5Config

    T5Config(d_model=8, num_layers=1, num_heads=1, d_kv=8, d_ff=8, vocab_size=16).save_pretrained(tmp_path / "t5")
    (tmp_path / "nodata").mkdir()
    args = [a.format(t5=tmp_path / "t5", tiny=tiny_model, nodata=tmp_path / "nodata") for a in extra]
    for command in ("sft", "grpo"):
        argv = ["--data", str(tmp_path / "nodata"), *args] if "--data" not in args else args
        result = subprocess.run([sys.executable, "-m", "rlntp.cli", "llm", command, *argv, "--out",
                                 str(tmp_path / "o")], capture_output=True, text=True)
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert message in result.stderr and not (tmp_path / "o").exists(), result.stderr


@pytest.mark.unit
def test_padding_free_sft_trains_on_the_same_loss_as_padded_batches(tiny_model, tmp_path, monkeypatch):
    """Sequences of different lengths put end to end in one row (`--padding-free`) must each attend to themselves
    only: the logged losses of two steps match the padded batches', and do not where transformers is kept from
    seeing where each sequence starts (every sequence then attends to the ones before it in the row)."""
    from rlntp.llm.sft import SFTConfig, run_sft
    from rlntp.llm.tiny import gsm8k_records

    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(16)))
    make_dataset(LLMDataConfig(source=str(records), p_cot=0.5), tmp_path / "data")  # long and short targets

    def losses(padding_free: bool, name: str) -> list[float]:
        done = run_sft(SFTConfig(model=str(tiny_model), data=str(tmp_path / "data"), epochs=1, lr=1e-3,
                                 per_device_batch=4, max_length=512, cpu=True, padding_free=padding_free),
                       tmp_path / name, progress=False)
        return [loss for _, loss in done["loss"]]

    padded, free = losses(False, "padded"), losses(True, "free")
    assert len(padded) == len(free) >= 2
    assert free == pytest.approx(padded, rel=1e-4)
    monkeypatch.setattr("transformers.masking_utils.find_packed_sequence_indices", lambda position_ids: None)
    assert losses(True, "free-unmasked") != pytest.approx(padded, rel=1e-4)


@pytest.mark.unit
def test_rows_cut_to_max_length_are_the_rows_trl_prepares(tiny_model, tmp_path):
    """`tokenized_apart(..., max_length)` (what a padding-free batch needs, as TRL cannot cut it) keeps the first
    max_length tokens of each row and drops a row left without a target token: the rows TRL's own preparation
    makes of the uncut rows for padded batches."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from rlntp.llm.sft import tokenized_apart
    from rlntp.llm.tiny import gsm8k_records

    records = tmp_path / "train.jsonl"
    made = [r | {"question": r["question"] * (3 if i % 2 else 1)} for i, r in enumerate(gsm8k_records(12))]
    records.write_text("".join(json.dumps(r) + "\n" for r in made))  # half of the prompts three times as long
    make_dataset(LLMDataConfig(source=str(records), p_cot=0.5), tmp_path / "data")
    rows = read_split(tmp_path / "data", "sft")
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    uncut = tokenized_apart(rows, tokenizer)
    limit = min(mask.index(1) for mask in uncut["completion_mask"]) + 5  # the long prompts fill it
    cut = tokenized_apart(rows, tokenizer, limit)
    assert 0 < len(cut) < len(uncut) and max(len(ids) for ids in cut["input_ids"]) == limit
    trainer = SFTTrainer(model=AutoModelForCausalLM.from_pretrained(tiny_model),
                         args=SFTConfig(output_dir=str(tmp_path / "sft"), completion_only_loss=True, use_cpu=True,
                                        max_length=limit, bf16=False, report_to="none"),
                         train_dataset=uncut, processing_class=tokenizer)
    assert trainer.train_dataset["input_ids"] == cut["input_ids"]
