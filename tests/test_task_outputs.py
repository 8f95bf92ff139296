"""A task of your own that breaks the contract of `Task` (tasks/base.py) stops in one line naming the task, the
method and what was wrong: at start (`tasks/checks.py` on a small batch), on every batch where the check is tensor
metadata, and where the task's own code raises (its module, constructor or a method), with its file and line.

Each hostile task is examples/tasks/mod3.py with one member broken (`Bad`, a subclass appended to its source)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rlntp.errors import ConfigError
from rlntp.tasks import TaskConfig, make_task

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
MOD3 = (ROOT / "examples" / "tasks" / "mod3.py").read_text()
TINY = ["--layers", "1", "--width", "16", "--heads", "2", "--device", "cpu", "--quiet", "--batch-size", "8",
        "--eval-samples", "16"]


def hostile(tmp_path: Path, body: str, name: str = "bad") -> tuple[str, Path]:
    """`FILE.py:Bad` for mod3 with `body` (indented class members) overriding part of it, and the file."""
    file = tmp_path / f"{name}.py"
    file.write_text(MOD3 + "\n\nclass Bad(SumMod3Task):\n" + body)
    return f"{file}:Bad", file


def line_of(file: Path, text: str) -> int:
    """The number of the line of `file` holding `text`."""
    return next(i for i, line in enumerate(file.read_text().splitlines(), 1) if text in line)


def refused_make(spec: str, message: str) -> str:
    """The task `spec` (d = 6) is refused when made (as every stage makes it) with one line naming the task and
    holding `message`; the line."""
    with pytest.raises(ConfigError) as error:
        make_task(TaskConfig(task=spec, d=6))
    text = str(error.value)
    assert len(text.splitlines()) == 1 and text.startswith(f"task {spec}: "), text
    assert message in text, text
    return text


def cli(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """`rlntp ARGV` in a fresh interpreter."""
    path = os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "rlntp.cli", *argv], capture_output=True, text=True, cwd=cwd,
                          env=os.environ | {"PYTHONPATH": path})


def assert_one_line(result: subprocess.CompletedProcess, *messages: str) -> str:
    """Exit status 2, one `error: ...` line on stderr holding every message, no traceback."""
    err = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, err)
    assert "Traceback" not in err and len(err.splitlines()) == 1 and err.startswith("error: "), err
    for message in messages:
        assert message in err, err
    return err


# Outputs of the wrong shape, dtype or range, caught at start on a small batch

def test_prompts_one_token_too_wide(tmp_path):
    spec, _ = hostile(tmp_path, "    def sample_prompts(self, n, generator):\n"
                                "        return torch.randint(0, 3, (n, self.d + 1), generator=generator)\n")
    refused_make(spec, "sample_prompts returned shape (8, 7) for 8 rows; it must return (n, prompt_len) = (8, 6)")


def test_samples_two_tokens_short(tmp_path):
    spec, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                                "        s = super().sample(n, generator)\n"
                                "        return Sequences(s.tokens[:, :-2], s.loss_mask[:, :-2], s.lengths, s.kinds)\n")
    refused_make(spec, "sample returned tokens of shape (8, 11) for 8 rows; it must be "
                       "(n, prompt_len + long_len + 1) = (8, 13)")


@pytest.mark.parametrize("value,shown", [(4, "token id 4; ids must be in [0, 4)"), (-1, "token id -1")],
                         ids=["out-of-vocabulary", "negative"])
def test_ids_outside_the_vocabulary(tmp_path, value, shown):
    spec, _ = hostile(tmp_path, "    def sample_prompts(self, n, generator):\n"
                                "        x = super().sample_prompts(n, generator)\n"
                                f"        x[:, 0] = {value}\n"
                                "        return x\n")
    refused_make(spec, f"sample_prompts returned {shown}")


def test_out_of_vocabulary_tokens_in_samples(tmp_path):
    spec, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                                "        s = super().sample(n, generator)\n"
                                "        return Sequences(s.tokens + 5, s.loss_mask, s.lengths, s.kinds)\n")
    refused_make(spec, "sample returned token id")


def test_float_ids(tmp_path):
    spec, _ = hostile(tmp_path, "    def sample_prompts(self, n, generator):\n"
                                "        return super().sample_prompts(n, generator).float()\n")
    refused_make(spec, "sample_prompts returned dtype torch.float32; token ids must be integers")


def test_is_correct_returning_twos(tmp_path):
    spec, _ = hostile(tmp_path, "    def is_correct(self, x, outputs):\n"
                                "        return super().is_correct(x, outputs).long() * 2\n")
    refused_make(spec, "is_correct returned values [2]; it must return one bool per row")


def test_is_correct_one_value_short(tmp_path):
    spec, _ = hostile(tmp_path, "    def is_correct(self, x, outputs):\n"
                                "        return super().is_correct(x, outputs)[:-1]\n")
    refused_make(spec, "is_correct returned shape (7,) for 8 rows; it must return one bool per row")


def test_is_valid_cot_of_the_wrong_shape(tmp_path):
    spec, _ = hostile(tmp_path, "    def is_valid_cot(self, x, outputs):\n"
                                "        return super().is_valid_cot(x, outputs)[:, None]\n")
    refused_make(spec, "is_valid_cot returned shape (8, 1) for 8 rows; it must return one bool per row")


@pytest.mark.parametrize("member,value,message", [
    ("guess_acc", "'0.5'", "guess_acc must be a number in [0, 1] (the accuracy of a guess), got '0.5'"),
    ("guess_acc", "1.5", "guess_acc must be a number in [0, 1]"),
    ("eos_id", "True", "eos_id must be the index of a token of vocab, got True"),
    ("name", "None", "name must be a non-empty str"),
], ids=["guess_acc-str", "guess_acc-1.5", "eos_id-True", "name-None"])
def test_members_of_the_wrong_type(tmp_path, member, value, message):
    spec, _ = hostile(tmp_path, f"    {member} = {value}\n")
    refused_make(spec, message)


def test_a_sample_whose_lengths_are_not_its_outputs(tmp_path):
    spec, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                                "        s = super().sample(n, generator)\n"
                                "        return Sequences(s.tokens, s.loss_mask, s.lengths + 1, s.kinds)\n")
    refused_make(spec, "sample lengths [")


# The task's own code raising: one line with its file and line

def test_a_module_that_raises_at_import(tmp_path, refused, monkeypatch):
    file = tmp_path / "raising.py"
    file.write_text("import torch\n\nraise RuntimeError('no GPU here')\n")
    refused(["sample", "--task", f"{file}:Bad"], f"does not import: RuntimeError: no GPU here ({file}:3)")
    (tmp_path / "raising_module.py").write_text(file.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    refused(["sample", "--task", "raising_module:Bad"],
            f"raising_module does not import: RuntimeError: no GPU here ({tmp_path / 'raising_module.py'}:3)")


def test_a_module_with_a_syntax_error(tmp_path, refused, monkeypatch):
    file = tmp_path / "syntax.py"
    file.write_text("import torch\n\ndef broken(:\n    pass\n")
    err = refused(["sample", "--task", f"{file}:Bad"], "does not import: SyntaxError: ")
    assert err.endswith(f"({file}:3)"), err
    (tmp_path / "syntax_module.py").write_text(file.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    err = refused(["sample", "--task", "syntax_module:Bad"], "syntax_module does not import: SyntaxError: ")
    assert err.endswith(f"({tmp_path / 'syntax_module.py'}:3)"), err


def test_a_module_importing_what_is_missing_names_its_line(tmp_path, refused, monkeypatch):
    (tmp_path / "needs_missing.py").write_text("import torch\nimport not_installed_anywhere\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    refused(["sample", "--task", "needs_missing:Bad"],
            f"ModuleNotFoundError: No module named 'not_installed_anywhere' ({tmp_path / 'needs_missing.py'}:2)")
    refused(["sample", "--task", "not_a_module_at_all:Bad"], "cannot import not_a_module_at_all")


def test_a_constructor_that_raises(tmp_path, refused):
    spec, file = hostile(tmp_path, "    def __init__(self, d, p_cot):\n"
                                   "        raise ValueError('d must be even')\n")
    refused(["sample", "--task", spec, "--d", "6"],
            f"Bad(d=6, p_cot=0.25) raised ValueError: d must be even ({file}:{line_of(file, 'd must be even')})")


def test_a_property_that_raises(tmp_path):
    spec, file = hostile(tmp_path, "    @property\n"
                                   "    def long_len(self):\n"
                                   "        return self.d // 0\n")
    refused_make(spec, f"raised ZeroDivisionError: integer division or modulo by zero "
                       f"({file}:{line_of(file, 'self.d // 0')})")


def test_a_method_that_raises_at_start(tmp_path):
    spec, file = hostile(tmp_path, "    def to_text(self, tokens):\n"
                                   "        return ' '.join(self.vocab[t + 1] for t in tokens)\n")
    refused_make(spec, f"to_text raised IndexError: tuple index out of range ({file}:{line_of(file, 't + 1')})")


def test_an_overridden_default_that_raises(tmp_path):
    """Methods with a default in Task (here output_lengths, which evaluation calls) are guarded where overridden."""
    spec, file = hostile(tmp_path, "    def output_lengths(self, outputs):\n"
                                   "        raise NotImplementedError('later')\n")
    task = make_task(TaskConfig(task=spec, d=6))
    where = re.escape(str(file))
    with pytest.raises(ConfigError, match=rf"output_lengths raised NotImplementedError: later \({where}:\d+\)$"):
        task.output_lengths(torch.zeros(2, 7, dtype=torch.long))


def test_a_method_that_raises_mid_run(tmp_path, refused):
    """is_correct keeps the contract on the start-up check's 8 rows and raises on evaluation's 16: the run stops
    in one line naming the method, its exception and line."""
    spec, file = hostile(tmp_path, "    def is_correct(self, x, outputs):\n"
                                   "        if len(x) > 8:\n"
                                   "            return {}['missing']\n"
                                   "        return super().is_correct(x, outputs)\n")
    refused(["pretrain", "--task", spec, "--d", "4", "--steps", "2", *TINY, "--out", str(tmp_path / "run")],
            f"task {file}:Bad: is_correct raised KeyError: 'missing' ({file}:{line_of(file, 'missing')})")


def test_a_method_that_raises_after_training_steps(tmp_path, refused):
    """sample raises on its third call, the second training batch: the run stops in one line, its checkpoint of
    step 1 kept for --resume."""
    spec, file = hostile(tmp_path, "    calls = 0\n\n"
                                   "    def sample(self, n, generator):\n"
                                   "        self.calls += 1\n"
                                   "        if self.calls == 3:\n"
                                   "            raise RuntimeError(f'call {self.calls}')\n"
                                   "        return super().sample(n, generator)\n")
    run = tmp_path / "run"
    refused(["pretrain", "--task", spec, "--d", "4", "--steps", "4", "--save-every", "1", *TINY, "--out", str(run)],
            f"task {spec}: sample raised RuntimeError: call 3 ({file}:{line_of(file, 'raise RuntimeError')})")
    assert (run / "checkpoints").is_dir() and (run / "config.json").is_file()


def test_the_api_raises_the_same_line(tmp_path):
    import rlntp

    spec, _ = hostile(tmp_path, "    def to_text(self, tokens):\n"
                                "        return tokens\n")
    with pytest.raises(ConfigError, match=r"to_text returned type list; it must return a str$"):
        rlntp.sample(TaskConfig(task=spec, d=6), 2)


def test_a_batch_of_the_wrong_shape_mid_run(tmp_path, refused):
    """is_correct returns one value short only for more than 8 rows (not at start): the shape check of every call
    stops evaluation's batch of 16 (a check of metadata, no host sync)."""
    spec, _ = hostile(tmp_path, "    def is_correct(self, x, outputs):\n"
                                "        right = super().is_correct(x, outputs)\n"
                                "        return right[:-1] if len(x) > 8 else right\n")
    refused(["pretrain", "--task", spec, "--d", "4", "--steps", "2", *TINY, "--out", str(tmp_path / "run")],
            "is_correct returned shape (15,) for 16 rows; it must return one bool per row")


def test_floats_mid_run_in_training_batches(tmp_path, refused):
    spec, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                                "        s = super().sample(n, generator)\n"
                                "        return s if n == 8 else Sequences(s.tokens.float(), s.loss_mask, s.lengths,"
                                " s.kinds)\n")
    refused(["data", "sample", "--task", spec, "--d", "4", "--train", "32", "--valid", "8", "--test", "8", "--out",
             str(tmp_path / "data")], "sample returned tokens of dtype torch.float32; token ids must be integers")


def test_the_checks_cost_milliseconds_and_keep_a_good_task(tmp_path):
    import time

    from rlntp.tasks import checks

    spec = f"{ROOT / 'examples' / 'tasks' / 'mod3.py'}:SumMod3Task"
    task = make_task(TaskConfig(task=spec, d=6))
    start = time.perf_counter()
    for _ in range(10):
        checks.check_outputs(task, spec)
    assert (time.perf_counter() - start) / 10 < 0.05
    batch = task.sample(64, torch.Generator().manual_seed(1))  # the guarded methods return what the task returns
    assert batch.tokens.shape == (64, task.context_len)
    assert task.is_correct(batch.tokens[:, :6], batch.tokens[:, 6:]).all()


# Through the command line, in a fresh interpreter: exit status 2, one line, no traceback

@pytest.mark.integration
def test_the_command_line_says_it_in_one_line(tmp_path):
    oov, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                               "        s = super().sample(n, generator)\n"
                               "        return Sequences(s.tokens + 4, s.loss_mask, s.lengths, s.kinds)\n", "oov")
    assert_one_line(cli(["pretrain", "--task", oov, "--d", "4", "--steps", "1", *TINY, "--out",
                         str(tmp_path / "run")], tmp_path), "sample returned token id", "ids must be in [0, 4)")
    assert not (tmp_path / "run").exists()
    negative, _ = hostile(tmp_path, "    def sample_prompts(self, n, generator):\n"
                                    "        return super().sample_prompts(n, generator) - 1\n", "negative")
    assert_one_line(cli(["sample", "--task", negative, "--d", "4", "--n", "3"], tmp_path),
                    "sample_prompts returned token id -1")
    floats, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                                  "        s = super().sample(n, generator)\n"
                                  "        return Sequences(s.tokens.float(), s.loss_mask, s.lengths, s.kinds)\n",
                        "floats")
    assert_one_line(cli(["data", "sample", "--task", floats, "--d", "4", "--train", "16", "--valid", "8", "--test", "8",
                         "--out", str(tmp_path / "data")], tmp_path), "sample returned tokens of dtype torch.float32")


@pytest.mark.integration
def test_plot_of_a_run_whose_task_became_hostile(tmp_path):
    """guess_acc = "0.5" (plots draw chance level from it) once crashed `rlntp plot`; the run's task is checked."""
    spec, file = hostile(tmp_path, "    pass\n", "later")
    from rlntp.cli import main

    main(["pretrain", "--task", spec, "--d", "4", "--steps", "1", *TINY, "--out", str(tmp_path / "run")])
    file.write_text(file.read_text().replace("    pass\n", "    guess_acc = '0.5'\n"))
    assert_one_line(cli(["plot", str(tmp_path / "run"), "--trust-task", spec], tmp_path),
                    "guess_acc must be a number in [0, 1]")
    assert not (tmp_path / "run" / "plot.png").exists()


def test_the_per_call_checks_add_no_host_sync_to_a_static_step():
    """A guarded task of your own in the static pre-training step: still no operation that makes a GPU's host wait
    (tests/test_gpu_ready.py holds the built-in tasks to the same)."""
    from rlntp.data import make_data
    from rlntp.devices import HostSyncCounter
    from rlntp.models import ModelConfig, build_model
    from rlntp.training.pretrain import make_step_loss

    cpu = torch.device("cpu")
    task = make_task(TaskConfig(task=f"{ROOT / 'examples' / 'tasks' / 'mod3.py'}:SumMod3Task", d=6))
    assert getattr(task.sample, "_rlntp_guarded", False)
    model = build_model(ModelConfig(layers=1, width=16, heads=2), task.vocab_size, task.context_len, task.eos_id, 0)
    data, step_loss = make_data(task, None, 0, cpu), make_step_loss(model, task, "static", cpu)
    with HostSyncCounter() as syncs:
        batch = data.train_batch(1, 16)
        step_loss(batch.tokens, batch.loss_mask)[0].backward()
        task.is_correct(batch.tokens[:, :6], batch.tokens[:, 6:])
    assert syncs.ops == []


def test_a_dataset_holds_only_ids_of_the_vocabulary(tmp_path, refused):
    """Ids outside the vocabulary in rows the start-up check never saw are refused when the dataset is written
    (one pass on the CPU), and a dataset of another task's larger vocabulary when it is read."""
    rare, _ = hostile(tmp_path, "    def sample(self, n, generator):\n"
                                "        s = super().sample(n, generator)\n"
                                "        return s if n == 8 else Sequences(s.tokens.clamp(max=2) * 3, s.loss_mask,"
                                " s.lengths, s.kinds)\n", "rare")
    refused(["data", "sample", "--task", rare, "--d", "4", "--train", "16", "--valid", "4", "--test", "4", "--out",
             str(tmp_path / "rare")], "the train split of task mod3 has token ids outside its vocabulary [0, 4)")
    assert not (tmp_path / "rare").exists()
    mod3 = f"{ROOT / 'examples' / 'tasks' / 'mod3.py'}:SumMod3Task"
    from rlntp.cli import main

    main(["data", "sample", "--task", mod3, "--d", "4", "--train", "16", "--valid", "4", "--test", "4", "--out",
          str(tmp_path / "data")])
    # the same name and params, parity's vocabulary: ids 0, 1 and EOS = 2
    binary, _ = hostile(tmp_path, "    vocab = ('0', '1', 'EOS')\n"
                                  "    eos_id = 2\n"
                                  "    guess_acc = 0.5\n"
                                  "    def sample_prompts(self, n, generator):\n"
                                  "        return torch.randint(0, 2, (n, self.d), generator=generator)\n"
                                  "    def outputs(self, x, kind):\n"
                                  "        return super().outputs(x, kind).clamp(max=2)\n", "binary")
    pretrain = ["pretrain", "--task", binary, "--d", "4", "--p-cot", "0.25", "--data", str(tmp_path / "data"),
                "--steps", "1", *TINY, "--out", str(tmp_path / "run")]
    refused(pretrain, "its vocabulary shrank from 4 to 3 tokens")  # the identity the dataset records (tasks.trust)
    # a dataset made before datasets recorded their task's identity: its ids are checked against the vocabulary
    manifest = tmp_path / "data" / "manifest.json"
    manifest.write_text(json.dumps({k: v for k, v in json.loads(manifest.read_text()).items() if k != "task_identity"}))
    refused(pretrain, "has token id 3, outside the vocabulary of task mod3 (3 tokens): it was made by another task")
