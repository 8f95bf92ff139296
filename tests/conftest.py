import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests compare floats bit for bit across runs; keep the thread count fixed."""
    torch.set_num_threads(2)
    yield


@pytest.fixture(scope="session")
def small_trained():
    """A small GPT-2 trained for a few hundred steps on parity d = 6, p_cot = 0.6: varied outputs."""
    from rlntp.models import ModelConfig, build_model
    from rlntp.tasks.parity import ParityTask
    from rlntp.training.losses import next_token_loss

    task = ParityTask(d=6, p_cot=0.6)
    model = build_model(ModelConfig(layers=2, width=32, heads=2), task.vocab_size, task.context_len, task.eos_id, seed=0)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        batch = task.sample(64, g)
        loss, _ = next_token_loss(model, batch.tokens, batch.loss_mask)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return task, model.eval()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory):
    """A random tiny Llama with a BPE tokenizer trained on GSM8K- and MATH-format text (`rlntp.llm.tiny`)."""
    from rlntp.llm.tiny import gsm8k_records, make_tiny_llama, math_records

    texts = [r["question"] + " " + r["answer"] for r in gsm8k_records(100)]
    texts += [r["problem"] + " " + r["solution"] for r in math_records(100)]
    return make_tiny_llama(tmp_path_factory.mktemp("tiny") / "model", texts)


@pytest.fixture
def refused(capsys):
    """`refused(argv, message)`: run `rlntp ARGV` and assert it stops with one `error: ...` line holding `message` and
    exit status `code` (2: bad input); returns the line."""
    from rlntp.cli import main

    def check(argv: list[str], message: str, code: int = 2) -> str:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        err = capsys.readouterr().err.strip()
        assert exit_info.value.code == code, err
        assert err.startswith("error: ") and len(err.splitlines()) == 1, err
        assert message in err, err
        return err

    return check
