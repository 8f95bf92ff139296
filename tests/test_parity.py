"""The parity mixture: exact formats, loss mask, answers and chain-of-thought checks (SPEC §2.1)."""

import pytest
import torch

from rlntp.cli import main
from rlntp.errors import ConfigError
from rlntp.tasks.base import output_lengths
from rlntp.tasks.parity import EOS, LONG, MEDIUM, SHORT, ParityTask, answers

pytestmark = pytest.mark.unit


def test_outputs_of_each_component_hand_computed():
    task = ParityTask(d=4, p_cot=0.5, p_medium=0.25)
    x = torch.tensor([[1, 0, 1, 1]])  # prefix parities 1 1 0 1
    assert task.outputs(x, LONG).tolist() == [[1, 1, 0, 1, EOS]]
    assert task.outputs(x, MEDIUM).tolist() == [[1, 0, 1, EOS, EOS]]  # b_1, b_3, b_4
    assert task.outputs(x, SHORT).tolist() == [[1, EOS, EOS, EOS, EOS]]
    # d odd: b_d is itself an odd position, so it is not repeated
    task5 = ParityTask(d=5, p_cot=0.5, p_medium=0.25)
    assert task5.outputs(torch.tensor([[1, 1, 1, 0, 1]]), MEDIUM).tolist() == [[1, 1, 0, EOS, EOS, EOS]]
    assert (task.context_len, task.max_new_tokens, task.medium_len, task5.medium_len) == (9, 5, 3, 3)


def test_loss_mask_covers_outputs_and_first_eos_only():
    task = ParityTask(d=4, p_cot=0.5, p_medium=0.25)
    seqs = task.sample(64, torch.Generator().manual_seed(0))
    for tokens, mask, length, kind in zip(seqs.tokens.tolist(), seqs.loss_mask.tolist(), seqs.lengths.tolist(),
                                          seqs.kinds.tolist()):
        assert length == {LONG: 4, MEDIUM: 3, SHORT: 1}[kind]
        expected = [False] * 4 + [True] * (length + 1) + [False] * (4 - length)
        assert mask == expected
        assert tokens[4 + length] == EOS and all(t in (0, 1) for t in tokens[: 4 + length])


def test_sequences_are_correct_and_mixture_weights_match():
    task = ParityTask(d=12, p_cot=0.3, p_medium=0.2)
    seqs = task.sample(20_000, torch.Generator().manual_seed(1))
    x, outputs = seqs.tokens[:, :12], seqs.tokens[:, 12:]
    assert task.is_correct(x, outputs).all() and task.is_valid_cot(x, outputs).all()
    freqs = torch.bincount(seqs.kinds, minlength=3).float() / 20_000
    assert freqs.tolist() == pytest.approx([0.3, 0.2, 0.5], abs=0.015)  # 3 standard deviations
    assert x.float().mean().item() == pytest.approx(0.5, abs=0.01)


def test_sampling_is_reproducible_from_the_seed():
    task = ParityTask(d=10, p_cot=0.25)
    a = task.sample(100, torch.Generator().manual_seed(7)).tokens
    b = task.sample(100, torch.Generator().manual_seed(7)).tokens
    c = task.sample(100, torch.Generator().manual_seed(8)).tokens
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_answer_extraction_and_validity():
    task = ParityTask(d=4, p_cot=0.25)
    x = torch.tensor([[1, 0, 1, 1]] * 6)  # parity 1
    outputs = torch.tensor([
        [1, 1, 0, 1, EOS],  # valid long, correct
        [1, EOS, EOS, EOS, EOS],  # valid short, correct
        [0, 1, EOS, EOS, EOS],  # answer 1 but not a valid chain of thought
        [0, EOS, EOS, EOS, EOS],  # wrong short answer
        [EOS, EOS, EOS, EOS, EOS],  # empty output: no answer
        [1, 1, 0, 1, 1],  # no EOS within the budget: wrong
    ])
    assert answers(outputs).tolist() == [1, 1, 1, 0, -1, -1]
    assert output_lengths(outputs, EOS, 5).tolist() == [4, 1, 2, 1, 0, 5]
    assert task.is_correct(x, outputs).tolist() == [True, True, True, False, False, False]
    assert task.is_valid_cot(x, outputs).tolist() == [True, True, False, False, False, False]
    # tokens after the first EOS do not matter
    assert task.is_valid_cot(x[:1], torch.tensor([[1, EOS, 0, 1, 1]])).tolist() == [True]


def test_sample_cli_prints_the_documented_format(capsys):
    main(["sample", "--task", "parity", "--d", "6", "--p-cot", "0.5", "--p-medium", "0.25", "--n", "200", "--seed", "3"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 200
    lengths = set()
    for line in lines:
        tokens = line.split(" ")
        assert tokens[-1] == "EOS" and "EOS" not in tokens[:-1] and set(tokens[:-1]) <= {"0", "1"}
        bits = [int(t) for t in tokens[:-1]]
        x, out = bits[:6], bits[6:]
        prefix = [sum(x[: i + 1]) % 2 for i in range(6)]
        assert out in (prefix, [prefix[0], prefix[2], prefix[4], prefix[5]], [prefix[5]])
        lengths.add(len(out))
    assert lengths == {1, 4, 6}


@pytest.mark.parametrize("kwargs, message", [
    (dict(d=1, p_cot=0.2), "d must be an integer >= 2"),
    (dict(d=8, p_cot=1.5), "p_cot must be in [0, 1]"),
    (dict(d=8, p_cot=-0.1), "p_cot must be in [0, 1]"),
    (dict(d=8, p_cot=0.7, p_medium=0.5), "p_cot + p_medium must be at most 1"),
])
def test_invalid_task_values_raise_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]").replace("+", r"\+")):
        ParityTask(**kwargs)


def test_a_held_out_parity_dataset_never_trains_on_its_test_inputs(tmp_path):
    from rlntp.data import load_dataset, make_data, make_parity_dataset
    from rlntp.tasks.multiplication import MultiplicationTask

    task = ParityTask(7, 0.25)
    main(["data", "parity", "--d", "7", "--p-cot", "0.25", "--held-out", "0.25", "--copies", "64",
          "--out", str(tmp_path / "a")])
    main(["data", "parity", "--d", "7", "--p-cot", "0.25", "--held-out", "0.25", "--copies", "64",
          "--out", str(tmp_path / "b")])
    assert (tmp_path / "a" / "train.parquet").read_bytes() == (tmp_path / "b" / "train.parquet").read_bytes()
    dataset = load_dataset(tmp_path / "a", task)
    train, test = (split.tokens[:, :7] for split in (dataset.train, dataset.test))
    as_int = lambda x: set((x * (2 ** torch.arange(7))).sum(1).tolist())  # noqa: E731
    assert len(as_int(test)) == len(test) == 32 and len(as_int(train)) == 96 and not as_int(train) & as_int(test)
    assert len(train) == 96 * 64
    long = (dataset.train.kinds == LONG).float().mean().item()
    assert abs(long - 0.25) < 4 * (0.25 * 0.75 / len(train)) ** 0.5
    assert task.is_correct(dataset.train.tokens[:, :7], dataset.train.tokens[:, 7:]).all()
    data = make_data(task, str(tmp_path / "a"), 0, torch.device("cpu"))
    assert data.distinct_inputs == 96 and torch.equal(data.test_prompts, test)
    with pytest.raises(ConfigError, match="leaves 0 to test"):
        make_parity_dataset(tmp_path / "c", ParityTask(4, 0.25), 0.01, 1, 0)
    with pytest.raises(ConfigError, match="enumerated for parity"):
        make_parity_dataset(tmp_path / "d", MultiplicationTask(2, 0.25), 0.25, 1, 0)
