import hashlib
import json
import os
import shutil
import time
from pathlib import Path

os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"  # before torch starts its thread pools

import pytest  # noqa: E402
import torch  # noqa: E402

TIERS = ("unit", "integration", "science")
"""Every test has exactly one tier, by cost (registered in pyproject.toml; `make test-fast` runs the first)."""
DEFAULT_TIER = "integration"
"""The tier of a test in a module that names none: in CI, out of the fast tier until someone measures it."""


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects
def pytest_collection_modifyitems(config, items):
    """One tier per test: a module's tier (`pytestmark = pytest.mark.unit`) is its tests' default and a test's own
    tier marker replaces it, so that `-m unit` selects by the tier a test has, not by one its module has.

    Under xdist (`make test`: `--dist loadscope`, a module's tests on one worker, which computes its module-scoped
    fixtures once) the modules are handed out costliest first, by their tests' tiers (a science test counts 3, an
    integration one 1) or the module's own `XDIST_COST`, so that no long module starts last while the other workers
    idle."""
    parents = set()
    for item in items:
        own = [mark.name for mark in item.own_markers if mark.name in TIERS]
        if len(own) > 1:
            raise pytest.UsageError(f"{item.nodeid} is marked {' and '.join(own)}: give it one tier of {TIERS}")
        if not own:
            inherited = next((mark.name for mark in item.iter_markers() if mark.name in TIERS), DEFAULT_TIER)
            item.add_marker(inherited)
        parents.update(node for node in item.listchain()[:-1])
    for node in parents:  # the defaults now live on the tests
        node.own_markers[:] = [mark for mark in node.own_markers if mark.name not in TIERS]
    if os.environ.get("PYTEST_XDIST_WORKER"):  # every worker collects the same order: xdist checks it
        cost = {}
        for item in items:
            tier = next(mark.name for mark in item.iter_markers() if mark.name in TIERS)
            cost[item.module] = cost.get(item.module, 0) + {"unit": 0, "integration": 1, "science": 3}[tier]
        for module in cost:  # a module may state its cost where one long test makes the count misjudge it
            cost[module] = getattr(module, "XDIST_COST", cost[module])
        items.sort(key=lambda item: -cost[item.module])  # stable: a module's tests keep their order


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Tests compare floats bit for bit; code outside a run (which pins its own, train.threads) uses one thread,
    whatever the machine."""
    torch.set_num_threads(1)
    yield


class Pause:
    """Pauses the rlntp runs of subprocesses at chosen steps (tests/pause_hook/sitecustomize.py), so a test
    interrupts or kills them at a moment it chooses instead of racing the machine's speed."""

    def __init__(self, directory: Path):
        self.directory = directory
        directory.mkdir()

    def env(self, *steps: int) -> dict[str, str]:
        """The environment of a subprocess whose runs pause right after saving the checkpoint of `steps`."""
        hook = str(Path(__file__).parent / "pause_hook")
        path = os.pathsep.join(filter(None, [hook, os.environ.get("PYTHONPATH")]))
        return os.environ | {"PYTHONPATH": path, "RLNTP_TEST_PAUSE_DIR": str(self.directory),
                             "RLNTP_TEST_PAUSE_STEPS": ",".join(map(str, steps))}

    def paused(self, step: int) -> list[int]:
        """The pids of the processes paused at `step`."""
        return [int(p.name.rsplit("-", 1)[1]) for p in self.directory.glob(f"paused-{step}-*")]

    def wait(self, step: int, process, count: int = 1, timeout: float = 300) -> list[int]:
        """Wait until `count` runs are paused at `step` (failing if `process` ends first); their pids."""
        deadline = time.time() + timeout
        while len(self.paused(step)) < count:
            assert process.poll() is None, f"ended before pausing at step {step}: {process.communicate()}"
            assert time.time() < deadline, f"no run paused at step {step} within {timeout} s"
            time.sleep(0.02)
        return self.paused(step)

    def release(self, step: int) -> None:
        """Let every run paused (or yet to pause) at `step` go on."""
        (self.directory / f"go-{step}").touch()


@pytest.fixture
def pause(tmp_path):
    """A `Pause` for this test's subprocesses."""
    return Pause(tmp_path / "pause")


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


def calibrated(p_cot: float, accuracy: float | None = None, long_tolerance: float = 0.05,
               accuracy_tolerance: float = 0.04):
    """The measured state the paper's claims assume after pre-training on a mixture: sampled answers are long
    with probability p_cot (within `long_tolerance`) and right with probability `accuracy` (default
    (1 + p_cot) / 2: the long path right, short answers a coin flip; within `accuracy_tolerance`). With
    2,000 evaluations one standard error of either is at most 0.011. A predicate on an evaluation, with its
    description."""
    accuracy = (1 + p_cot) / 2 if accuracy is None else accuracy

    def ready(record: dict) -> bool:
        return (abs(record["eval/sampled_long_frac"] - p_cot) <= long_tolerance
                and abs(record["eval/sampled_acc"] - accuracy) <= accuracy_tolerance)

    ready.description = (f"sampled P(long) within {long_tolerance} of {p_cot} and sampled accuracy within "
                         f"{accuracy_tolerance} of {accuracy:.3f}")
    return ready


@pytest.fixture(scope="session")
def pretrain_until():
    """`pretrain_until(argv, out, p_cot, chunk, cap, ready=None)`: `rlntp pretrain ARGV --out OUT` in chunks of
    `chunk` steps (each resuming the last, evaluated and saved at its end) until an evaluation is `ready`
    (default `calibrated(p_cot)`; a predicate with a `description`); returns (step, that evaluation). Not
    there by `cap` steps: the test fails with "precondition not reached", distinct from the claim it then
    tests failing."""
    from rlntp.cli import main
    from rlntp.runs import metrics

    def run(argv: list[str], out: Path, p_cot: float, chunk: int, cap: int, ready=None) -> tuple[int, dict]:
        ready, seen = ready or calibrated(p_cot), []
        for steps in range(chunk, cap + 1, chunk):
            main([*argv, "--steps", str(steps), "--eval-every", str(chunk), "--save-every", str(chunk),
                  "--out", str(out), *(["--resume"] if steps > chunk else [])])
            last = [r for r in metrics.read_metrics(out) if "eval/sampled_acc" in r][-1]
            seen.append(f"step {steps}: P(long) {last['eval/sampled_long_frac']:.3f}, "
                        f"accuracy {last['eval/sampled_acc']:.3f}")
            if ready(last):
                return steps, last
        pytest.fail(f"precondition not reached within {cap} steps: {ready.description}; measured "
                    + "; ".join(seen))

    return run


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A directory of this test session shared by its xdist workers (each has its own basetemp inside it)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def pretrained_to_calibration(shared_tmp, pretrain_until):
    """`pretrained_to_calibration(argv, p_cot, chunk, cap, ready=None)`: the starting point of RL after NTP, the run
    `pretrain_until(argv, ...)` trains until it is calibrated, made once per test session whichever tests and xdist
    workers ask for it (under a file lock, in a directory keyed by the arguments); returns (run directory, step,
    that evaluation). Tests only read the run (`posttrain --from`). A precondition not reached fails every test
    that asks for it, with the same message, without training again."""
    from filelock import FileLock

    def get(argv: list[str], p_cot: float, chunk: int, cap: int, ready=None) -> tuple[Path, int, dict]:
        ready = ready or calibrated(p_cot)
        key = json.dumps([argv, p_cot, chunk, cap, ready.description])
        root = shared_tmp / "pretrained" / hashlib.sha256(key.encode()).hexdigest()[:16]
        root.mkdir(parents=True, exist_ok=True)
        done, failed, run = root / "done.json", root / "failed.txt", root / "run"
        with FileLock(root / "lock"):
            if failed.exists():
                pytest.fail(failed.read_text())
            if not done.exists():
                if run.exists():  # an attempt that raised: start again
                    shutil.rmtree(run)
                try:
                    step, record = pretrain_until(argv, run, p_cot, chunk, cap, ready)
                except pytest.fail.Exception as error:
                    failed.write_text(str(error))
                    raise
                done.write_text(json.dumps({"key": key, "step": step, "record": record}))
        made = json.loads(done.read_text())
        return run, made["step"], made["record"]

    return get
