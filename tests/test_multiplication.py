"""n x n multiplication: the public text format byte for byte, checks of answers and chains of thought,
datasets on disk (determinism, disjoint splits, import of public text files), bad input (SPEC §2.2).

Lines below were worked out by hand from the format: numbers least-significant digit first, partial
product i = digit_i(b) x a x 10^i padded to n + 1 + i digits, running sums after partial products
1 .. n - 2, and the product padded to 2n digits.
"""

import json

import pytest
import torch

from rlntp.cli import main
from rlntp.data import load_dataset, make_data, make_mult_dataset, read_mult_text
from rlntp.errors import ConfigError
from rlntp.tasks import TaskConfig, make_task
from rlntp.tasks.base import LONG, SHORT
from rlntp.tasks.multiplication import ANSWER, EOS, MultiplicationTask
from rlntp.training.rewards import compute_reward

pytestmark = pytest.mark.unit

SPEC_LONG = "3 2 1 * 6 5 4||8 3 7 0 + 0 5 1 6 0 ( 8 8 8 6 0 ) + 0 0 2 9 4 0 #### 8 8 0 6 5 0"  # 123 x 456
SPEC_SHORT = "3 2 1 * 6 5 4||#### 8 8 0 6 5 0"
# 1234 x 1002 = 1,236,468: a multiplier with zero digits gives all-zero partial products
ZERO_DIGIT = ("4 3 2 1 * 2 0 0 1||8 6 4 2 0 + 0 0 0 0 0 0 ( 8 6 4 2 0 0 ) + 0 0 0 0 0 0 0 ( 8 6 4 2 0 0 0 ) "
              "+ 0 0 0 4 3 2 1 0 #### 8 6 4 6 3 2 1 0")
TWO_BY_TWO = "2 1 * 4 3||8 4 0 + 0 6 3 0 #### 8 0 4 0"  # 12 x 34 = 408: no running sums


@pytest.mark.parametrize("digits, a, b, long, line", [
    (3, 123, 456, True, SPEC_LONG),
    (3, 123, 456, False, SPEC_SHORT),
    (4, 1234, 1002, True, ZERO_DIGIT),
    (2, 12, 34, True, TWO_BY_TWO),
    (2, 99, 99, False, "9 9 * 9 9||#### 1 0 8 9"),
])
def test_lines_are_the_public_format_byte_for_byte(digits, a, b, long, line):
    task = MultiplicationTask(digits, 0.5)
    assert task.line(a, b, long) == line
    assert task.parse_line(line) == (a, b, long)


def test_sizes_tokens_and_loss_mask():
    task = MultiplicationTask(3, 0.5)
    assert (task.prompt_len, task.long_len, task.short_len, task.max_new_tokens) == (8, 31, 7, 32)
    assert task.context_len == 40 and task.vocab_size == 17 and task.vocab[EOS] == "EOS"
    seqs = task.encode(torch.tensor([123, 123]), torch.tensor([456, 456]), torch.tensor([True, False]))
    assert seqs.tokens.shape == (2, 40)
    assert seqs.lengths.tolist() == [31, 7] and seqs.kinds.tolist() == [LONG, SHORT]
    assert seqs.tokens[1, 8:16].tolist() == [ANSWER, 8, 8, 0, 6, 5, 0, EOS]
    assert (seqs.tokens[1, 16:] == EOS).all()
    # targets: the output and its EOS, never the prompt `3 2 1 * 6 5 4||` nor the padding
    mask = seqs.loss_mask.int().tolist()
    assert mask[0] == [0] * 8 + [1] * 32 and mask[1] == [0] * 8 + [1] * 8 + [0] * 24
    assert task.to_text(seqs.tokens[0].tolist()) == SPEC_LONG and task.to_text(seqs.tokens[1].tolist()) == SPEC_SHORT


def _outputs(task, texts):
    """Outputs (after `||`) given as text, EOS-terminated unless they end with `...` (no EOS in the budget)."""
    rows = []
    for text in texts:
        words = text.split()
        no_eos = words[-1:] == ["..."]
        ids = [task.vocab.index(w) for w in words if w != "..."]
        ids += ([] if no_eos else [EOS])
        ids += [ids[-1] if no_eos else EOS] * (task.max_new_tokens - len(ids))
        rows.append(ids[: task.max_new_tokens])
    return torch.tensor(rows)


def test_answer_and_chain_of_thought_checks():
    task = MultiplicationTask(3, 0.5)
    long_out, short_out = SPEC_LONG.split("||")[1], SPEC_SHORT.split("||")[1]
    outputs = _outputs(task, [
        long_out,                                   # the long sequence: correct, valid
        short_out,                                  # the short sequence: correct, valid
        "1 2 3 #### 8 8 0 6 5 0",                   # a wrong trace, right product: correct, not valid
        "#### 8 8 0 6 5 1",                         # last digit wrong
        "#### 8 8 0 6 5",                           # product not zero-padded to 2n digits
        "#### 8 8 0 6 5 0 0",                       # a digit too many
        "8 8 0 6 5 0",                              # no ####
        "#### 8 8 0 6 5 0 #### 1 2 3 4 5 6",        # the answer is what follows the last ####
        "#### 8 8 0 6 5 0 ...",                     # never emits EOS: scored wrong (paper App. C.3)
    ])
    prompts = task.prompts(torch.tensor([123] * 9), torch.tensor([456] * 9))
    assert task.is_correct(prompts, outputs).tolist() == [True, True, True] + [False] * 6
    assert task.is_valid_cot(prompts, outputs).tolist() == [True, True] + [False] * 7
    assert task.output_lengths(outputs).tolist()[-1] == task.max_new_tokens
    e2e = compute_reward("e2e", task, prompts, outputs)
    assert e2e.value.tolist() == [1.0, 1.0, 1.0] + [0.0] * 6
    penalized = compute_reward("length", task, prompts, outputs, length_penalty=0.4)
    torch.testing.assert_close(penalized.value[:2], torch.tensor([1 - 0.4, 1 - 0.4 * 7 / 31]))


def test_sampled_mixture_is_consistent():
    task = MultiplicationTask(4, 0.25)
    seqs = task.sample(4000, torch.Generator().manual_seed(0))
    prompts, outputs = seqs.tokens[:, : task.prompt_len], seqs.tokens[:, task.prompt_len :]
    assert task.is_correct(prompts, outputs).all() and task.is_valid_cot(prompts, outputs).all()
    assert abs((seqs.kinds == LONG).float().mean().item() - 0.25) < 0.03
    assert set(seqs.lengths.tolist()) == {task.long_len, task.short_len}
    a, b = task.operands(prompts)
    assert ((1000 <= a) & (a < 10_000) & (1000 <= b) & (b < 10_000)).all()


# ---------------------------------------------------------------- the command line


def test_sample_prints_public_lines(capsys):
    main(["sample", "--task", "mult", "--digits", "3", "--operands", "123,456", "--p-cot", "1"])
    main(["sample", "--task", "mult", "--digits", "3", "--operands", "123,456", "--p-cot", "0"])
    main(["sample", "--task", "mult", "--digits", "4", "--operands", "1234,1002", "--p-cot", "1"])
    assert capsys.readouterr().out.splitlines() == [SPEC_LONG, SPEC_SHORT, ZERO_DIGIT]
    main(["sample", "--task", "mult", "--digits", "3", "--p-cot", "0.5", "--n", "20", "--seed", "3"])
    lines = capsys.readouterr().out.splitlines()
    task = MultiplicationTask(3, 0.5)
    assert len(lines) == 20 and all(task.parse_line(line) for line in lines)
    assert {task.parse_line(line)[2] for line in lines} == {True, False}


def _fails_with(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err, err


@pytest.mark.parametrize("argv, message", [
    (["sample", "--task", "mult", "--digits", "1"], "digits must be an integer in [2, 9], got 1"),
    (["sample", "--task", "mult", "--p-cot", "1.5"], "p_cot must be in [0, 1], got 1.5"),
    (["sample", "--task", "mult", "--digits", "3", "--operands", "0123,456"], "must have 3 digits and no leading zero"),
    (["sample", "--task", "mult", "--digits", "3", "--operands", "012,456"], "no leading zero, got '012'"),
    (["sample", "--task", "mult", "--digits", "3", "--operands", "123,45"], "must have 3 digits"),
    (["sample", "--task", "mult", "--digits", "3", "--operands", "123x456"], "two numbers A,B"),
    (["sample", "--task", "parity", "--operands", "12,34"], "--operands is for --task mult"),
    (["sample", "--task", "mult", "--p-medium", "0.2"], "p_medium (a partial chain of thought) exists for parity only"),
    (["data", "mult", "--digits", "2", "--train", "8000", "--valid", "100", "--test", "100", "--out", "D"],
     "only 8,100 distinct 2x2 pairs exist"),
    (["data", "mult", "--digits", "10", "--out", "D"], "digits must be an integer in [2, 9], got 10"),
    (["data", "mult", "--p-cot", "-1", "--out", "D"], "p_cot must be >= 0, got -1.0"),
    (["data", "mult", "--from-text", "nonsense", "--out", "D"], "--from-text takes SPLIT=FILE"),
    (["data", "mult", "--from-text", "dev=x.txt", "--out", "D"], "unknown split 'dev'"),
    (["data", "mult", "--from-text", "train=missing.txt", "--out", "D"], "cannot read missing.txt"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    _fails_with(capsys, argv, message)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- datasets on disk

SIZES = {"train": 3000, "valid": 200, "test": 300}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_mult_dataset(tmp_path_factory.mktemp("mult") / "d3", 3, 0.25, SIZES, seed=0)


def _table(path, split):
    import pyarrow.parquet as pq

    return pq.read_table(path / f"{split}.parquet").to_pydict()


def test_dataset_splits_are_disjoint_and_as_asked(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["task"] == "mult" and manifest["digits"] == 3 and manifest["p_cot"] == 0.25
    pairs = {}
    for split, size in SIZES.items():
        table = _table(dataset, split)
        assert manifest["splits"][split]["rows"] == len(table["a"]) == size
        pairs[split] = set(zip(table["a"], table["b"]))
        assert len(pairs[split]) == size  # distinct within the split
        assert all(100 <= a < 1000 and 100 <= b < 1000 for a, b in pairs[split])
    assert not (pairs["train"] & pairs["test"]) and not (pairs["train"] & pairs["valid"])
    assert not (pairs["valid"] & pairs["test"])
    train = _table(dataset, "train")
    assert abs(sum(train["long"]) / SIZES["train"] - 0.25) < 0.03  # the chain of thought kept with p_cot
    assert all(_table(dataset, "test")["long"])  # test rows keep their chain of thought (reference solutions)
    task = MultiplicationTask(3, 0.25)
    for text, ids, a, b, long in zip(*(train[k][:50] for k in ("text", "input_ids", "a", "b", "long"))):
        assert text == task.line(a, b, long) and task.to_text(ids) == text and ids[-1] == EOS


def test_same_options_same_bytes_and_test_pairs_independent_of_train_size(dataset, tmp_path):
    again = make_mult_dataset(tmp_path / "again", 3, 0.25, SIZES, seed=0)
    for name in ("train.parquet", "valid.parquet", "test.parquet", "manifest.json", "tokenizer.json"):
        assert (again / name).read_bytes() == (dataset / name).read_bytes(), name
    bigger = make_mult_dataset(tmp_path / "bigger", 3, 0.25, SIZES | {"train": 5000}, seed=0)
    assert (bigger / "test.parquet").read_bytes() == (dataset / "test.parquet").read_bytes()
    other = make_mult_dataset(tmp_path / "other", 3, 0.25, SIZES, seed=1)
    assert (other / "test.parquet").read_bytes() != (dataset / "test.parquet").read_bytes()


def test_public_text_import_gives_the_generated_sequences(dataset, tmp_path):
    """Export the generated pairs as full public lines, import them at the same p_cot and seed: same dataset."""
    task = MultiplicationTask(3, 1.0)
    files = {}
    for split in SIZES:
        table = _table(dataset, split)
        files[split] = tmp_path / f"{split}.txt"
        files[split].write_text("".join(task.line(a, b, True) + "\n" for a, b in zip(table["a"], table["b"])))
    pairs, long = read_mult_text(task, files["test"])
    assert len(pairs) == SIZES["test"] and long.all()
    imported = make_mult_dataset(tmp_path / "imported", 3, 0.25, SIZES, seed=0, from_text=files)
    for split in SIZES:
        assert _table(imported, split) == _table(dataset, split), split
    # a file imported at p_cot = 1 holds exactly its lines
    whole = make_mult_dataset(tmp_path / "whole", 3, 1.0, SIZES, seed=5, from_text=files)
    assert "".join(t + "\n" for t in _table(whole, "train")["text"]) == files["train"].read_text()


def test_the_ecosystem_reads_the_dataset(dataset):
    datasets = pytest.importorskip("datasets")
    from transformers import AutoTokenizer

    loaded = datasets.load_dataset("parquet", data_dir=str(dataset))
    assert {name: len(split) for name, split in loaded.items()} == {"train": 3000, "validation": 200, "test": 300}
    tokenizer = AutoTokenizer.from_pretrained(dataset)
    row = loaded["test"][0]
    assert tokenizer(row["text"])["input_ids"] + [tokenizer.eos_token_id] == row["input_ids"]


def test_loaded_dataset_and_its_epochs(dataset):
    task = make_task(TaskConfig(task="mult", digits=3, p_cot=0.25, data=str(dataset)))
    loaded = load_dataset(dataset, task)
    assert loaded.train.tokens.shape == (3000, task.context_len) and loaded.test.tokens.shape == (300, task.context_len)
    assert (loaded.train.kinds == LONG).sum().item() == sum(_table(dataset, "train")["long"])
    data = make_data(task, str(dataset), seed=0, device=torch.device("cpu"))
    # 3000 rows, batch 700: step 4 crosses into the second epoch; every row once per epoch
    rows = torch.cat([data.train_batch(step, 700).tokens for step in range(5)])[:3000]
    assert len({tuple(r) for r in rows.tolist()}) == 3000
    assert torch.equal(data.train_batch(3, 700).tokens, make_data(task, str(dataset), 0, torch.device("cpu"))
                       .train_batch(3, 700).tokens)  # a function of (seed, step) alone
    assert torch.equal(data.test_prompts, loaded.test.tokens[:, : task.prompt_len])


def test_dataset_bad_inputs(dataset, tmp_path, capsys):
    _fails_with(capsys, ["pretrain", "--task", "mult", "--digits", "4", "--p-cot", "0.25", "--data", str(dataset),
                         "--out", str(tmp_path / "run")], "was made for task = mult, digits = 3, p_cot = 0.25")
    _fails_with(capsys, ["pretrain", "--task", "mult", "--digits", "3", "--p-cot", "0.25", "--data", str(tmp_path),
                         "--out", str(tmp_path / "run")], "is not an rlntp dataset")
    _fails_with(capsys, ["pretrain", "--task", "mult", "--digits", "3", "--p-cot", "0.25", "--data", str(dataset),
                         "--batch-size", "4000", "--out", str(tmp_path / "run")],
                "train split has 3000 rows, fewer than batch_size 4000")
    bad = tmp_path / "bad.txt"
    bad.write_text(SPEC_LONG + "\n" + SPEC_LONG.replace("8 8 8 6 0", "8 8 8 6 1") + "\n")
    _fails_with(capsys, ["data", "mult", "--digits", "3", "--from-text", f"test={bad}", "--out", str(tmp_path / "x")],
                f"{bad} line 2: differs from the long line of 123 x 456")
    bad.write_text(SPEC_SHORT + "\n" + "3 2 1 * 6 5||#### 8\n")
    _fails_with(capsys, ["data", "mult", "--digits", "3", "--from-text", f"test={bad}", "--out", str(tmp_path / "x")],
                f"{bad} line 2: not a 3x3 prompt")
    bad.write_text("3 2 0 * 6 5 4||#### 0 8 0 4 1 0\n")  # 023 x 456
    _fails_with(capsys, ["data", "mult", "--digits", "3", "--from-text", f"test={bad}", "--out", str(tmp_path / "x")],
                "line 1: an operand has a leading zero")
    bad.write_bytes(b"3 2 1 \xff\n")
    _fails_with(capsys, ["data", "mult", "--digits", "3", "--from-text", f"test={bad}", "--out", str(tmp_path / "x")],
                "is not UTF-8 text")
    good = tmp_path / "good.txt"
    good.write_text(SPEC_LONG + "\n")
    _fails_with(capsys, ["data", "mult", "--digits", "3", "--from-text", f"test={good}", f"valid={good}",
                         "--out", str(tmp_path / "x")], "1 pairs are both in")
    assert not (tmp_path / "x").exists() and not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="exists and is not an empty directory"):
        make_mult_dataset(dataset, 3, 0.25, SIZES, seed=0)
