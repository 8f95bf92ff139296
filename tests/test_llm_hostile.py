"""The LLM path under hostile and careless input: local record files too large or without a usable record (refused
before the recipe's directory is claimed), a Ctrl-C while the tiny model's tokenizer trains on a large record file,
a hub that cannot be reached (every command, one line of ours, within seconds), and report.json text that would
inject HTML or Markdown into `rlntp report --markdown`."""

import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REAL = Path(__file__).parent / "data" / "real"
TRAIN, TEST = REAL / "gsm8k_train.jsonl", REAL / "gsm8k_test.jsonl"
ROOT = Path(__file__).parents[1]


def rlntp(*argv: str, env: dict | None = None, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    """`rlntp ARGV` in a subprocess: its result and wall time in seconds."""
    started = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", *argv], capture_output=True, text=True,
                            timeout=timeout, env=env)
    return result, time.perf_counter() - started


def one_line(result: subprocess.CompletedProcess, message: str, code: int = 2) -> None:
    """The command stopped with one `error: ...` line holding `message` and nothing else on stderr."""
    err = result.stderr
    assert result.returncode == code and err.startswith("error: ") and err.count("\n") == 1, err
    assert message in err, err


def write_records(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


NO_ANSWER = [{"question": f"What is {i} + 1?", "answer": f"{i} + 1 is one more than {i}"} for i in range(50)]
"""GSM8K-format records with no `#### answer`: none can be split into a chain of thought and an answer."""


@pytest.mark.parametrize("case, message", [
    ("train", "0 usable gsm8k training record(s); the SFT and RL halves need at least 2 (50 had no '#### <answer>')"),
    ("test", "0 usable gsm8k test record(s) of 50: none has '#### <answer>'"),
    ("size", "gsm8k_train.jsonl is 0.1 MB, over the 0.05 MB limit on a record file (its records are held in memory); "
             "pass --max-record-mb 1 to read it anyway"),
])
def test_records_that_cannot_be_used_are_refused_before_the_recipe_directory_is_claimed(tmp_path, case, message):
    """Before: `0 usable gsm8k training record(s)` 22 s in, after the directory was claimed and the tiny model built
    there, and the corrected rerun into the same --out refused. Now the recipe's directory is never made, and
    `rlntp llm data` leaves nothing either (no partial directory). About 10 s a case on 2 idle cores."""
    bad = write_records(tmp_path / "bad.jsonl", NO_ANSWER)
    train, test, extra = {"train": (bad, TEST, []), "test": (TRAIN, bad, []),
                          "size": (TRAIN, TEST, ["--max-record-mb", "0.05"])}[case]
    out = tmp_path / "out"
    result, _ = rlntp("reproduce", "gsm8k", "--preset", "tiny", "--source", str(train), "--test-source", str(test),
                      *extra, "--device", "cpu", "--out", str(out), "--quiet")
    one_line(result, message)
    assert not out.exists()
    result, _ = rlntp("llm", "data", "--source", str(train), "--test-source", str(test), *extra, "--out", str(out))
    one_line(result, message)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.jsonl"]


def test_ctrl_c_stops_the_tokenizer_training_on_a_large_record_file_at_once(tmp_path):
    """A 3 MB record file of 400 records whose questions are 7,500-letter words (the worst case for BPE training:
    5 s for the 1 MB the tokenizer trains on, `llm.tiny.TOKENIZER_CHARS`; minutes and gigabytes uncapped), into the
    --out a record file without usable records was refused from: SIGINT once the tokenizer's training has started
    ends the process within seconds, exit status 130, one line; the tokenizer never finished and no model or
    partial directory is left. About 15 s on 2 idle cores."""
    out = tmp_path / "out"
    refused, _ = rlntp("reproduce", "gsm8k", "--preset", "tiny", "--source",
                       str(write_records(tmp_path / "bad.jsonl", NO_ANSWER)), "--test-source", str(TEST),
                       "--device", "cpu", "--out", str(out), "--quiet")
    one_line(refused, "0 usable gsm8k training record(s)")
    rng = random.Random(0)
    big = write_records(tmp_path / "big.jsonl", [
        {"question": "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(7500)),
         "answer": f"{i} + 1 = {i + 1}\n#### {i + 1}"} for i in range(400)])
    assert big.stat().st_size > 3_000_000
    markers = tmp_path / "markers"
    markers.mkdir()
    # the CLI itself (rlntp.cli.main), with the tokenizer's training traced: a file when it starts, one if it ends;
    # the real training done 50 times over, so that the SIGINT lands inside it however fast this machine trains
    driver = ("import pathlib, sys\nimport rlntp.llm.tiny as tiny\nmarkers, train = pathlib.Path(sys.argv[1]), "
              "tiny.train_tokenizer\ndef traced(*args, **kwargs):\n    (markers / 'started').touch()\n"
              "    for _ in range(50):\n        tokenizer = train(*args, **kwargs)\n"
              "    (markers / 'finished').touch()\n    return tokenizer\n"
              "tiny.train_tokenizer = traced\nfrom rlntp.cli import main\nmain(sys.argv[2:])\n")
    process = subprocess.Popen([sys.executable, "-c", driver, str(markers), "reproduce", "gsm8k", "--preset", "tiny",
                                "--source", str(big), "--test-source", str(TEST), "--device", "cpu", "--out",
                                str(out), "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               # SIGINT at its default even where this test runs in a shell's background (which
                               # starts jobs with SIGINT ignored, and a child inherits that): tests/test_rundirs.py
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 240
    while not (markers / "started").exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, "the tokenizer's training never started"
        time.sleep(0.02)
    time.sleep(0.5)  # into the Rust trainer's work (2-5 s here)
    process.send_signal(signal.SIGINT)
    sent = time.perf_counter()
    err = process.stderr.readline()
    answered = time.perf_counter() - sent
    err += process.communicate(timeout=60)[1]
    ended = time.perf_counter() - sent
    assert process.returncode == 130 and err == "error: interrupted; rerun the same command to continue\n", err
    # the message at once (the trainer is abandoned, not waited for); the exit after the interpreter's own clean-up
    # of torch, transformers and the abandoned trainer (measured 4 s on 2 cores at load 5.5, about 1 s idle; bounds with room for a loaded machine)
    assert answered < 5 and ended < 30, f"{answered:.1f} s to the message, {ended:.1f} s to the exit"
    assert not (markers / "finished").exists()
    assert not (out / "model").exists() and not any(p.name.startswith(".") for p in out.iterdir())
    assert json.loads((out / "report.json").read_text())["settings"]["source"] == str(big)  # rerun resumes it


@pytest.mark.unit
def test_the_tokenizer_trains_on_a_bounded_prefix_of_the_texts():
    from rlntp.llm.tiny import TOKENIZER_CHARS, TOKENIZER_TEXT_CHARS, tokenizer_texts

    texts = ["a" * 20_000] + ["b" * 1000] * 2000
    kept = tokenizer_texts(texts)
    assert len(kept[0]) == TOKENIZER_TEXT_CHARS and sum(map(len, kept)) == TOKENIZER_CHARS
    assert kept[1:] == texts[1:len(kept)] and len(kept[-1]) == 1000
    small = ["one record", "another"]
    assert tokenizer_texts(small) == small


def _hub_env() -> dict[str, str]:
    """This environment without a hub cache to fall back on; where the real network is present, the hub's address is
    a closed local port, so the hub cannot be reached either way."""
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                            "TRANSFORMERS_OFFLINE")}
    try:
        socket.getaddrinfo("huggingface.co", 443)
    except OSError:
        return env  # no network: the real case
    return env | {"HF_ENDPOINT": "http://127.0.0.1:9"}


@pytest.fixture(scope="module")
def startup():
    """The wall time of an LLM command that ends at its first hub check without asking the network (HF_HUB_OFFLINE):
    the imports alone, on this machine under its present load."""
    result, seconds = rlntp("llm", "sft", "--model", "some/hub-name", "--data", "d", "--out", "o",
                            env=_hub_env() | {"HF_HUB_OFFLINE": "1"})
    one_line(result, "HF_HUB_OFFLINE is set and the model 'some/hub-name' is not in the local cache")
    return seconds


@pytest.mark.parametrize("argv, message", [
    (["llm", "data", "--dataset", "gsm8k", "--source", "openai/gsm8k", "--out", "{tmp}/o"],
     "cannot reach the dataset 'openai/gsm8k' on the Hugging Face hub"),
    (["llm", "data", "--source", str(TRAIN), "--test-source", "openai/gsm8k", "--out", "{tmp}/o"],
     "cannot reach the dataset 'openai/gsm8k' on the Hugging Face hub"),
    (["reproduce", "gsm8k", "--preset", "paper", "--out", "{tmp}/o"],
     "cannot reach the dataset 'openai/gsm8k' on the Hugging Face hub"),
    (["reproduce", "gsm8k", "--model", "some/hub-name", "--source", str(TRAIN), "--test-source", str(TEST), "--out",
      "{tmp}/o"],
     "cannot reach the model 'some/hub-name' on the Hugging Face hub"),
    (["llm", "sft", "--model", "some/hub-name", "--data", "{tmp}", "--out", "{tmp}/o"],
     "cannot reach the model 'some/hub-name' on the Hugging Face hub"),
    (["llm", "grpo", "--model", "some/hub-name", "--data", "{tmp}", "--out", "{tmp}/o"],
     "cannot reach the model 'some/hub-name' on the Hugging Face hub"),
    (["llm", "eval", "--model", "some/hub-name", "--data", "{tmp}", "--out", "{tmp}/o.json"],
     "cannot reach the model 'some/hub-name' on the Hugging Face hub"),
])
def test_an_unreachable_hub_fails_within_seconds_in_one_line_of_ours(tmp_path, startup, argv, message):
    """Before: `rlntp llm data --source openai/gsm8k` took 29 s (the download's retries) and printed the hub
    library's own `Retrying in 1s` lines before ours; `llm sft|grpo --model HUB-NAME` 28 s. Now each asks the hub
    once (`llm.common.check_on_hub`): measured 5-7 s from process start on 2 idle cores, nearly all of it imports.
    The bound is 10 s from process start, or, on a machine so loaded that the imports alone take longer, 5 s more
    than a command that stops at the same check without the network (the `startup` fixture). About 6 s a case."""
    result, seconds = rlntp(*[a.format(tmp=tmp_path) for a in argv], env=_hub_env())
    one_line(result, message)
    assert seconds < 10 or seconds < startup + 5, f"{seconds:.1f} s (startup {startup:.1f} s): {result.stderr}"
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.json").exists()


def test_report_markdown_escapes_html_and_markdown_from_report_json(tmp_path):
    """report.json fields that would inject a script, raw HTML, a link, an image or a table row into the Markdown of
    `rlntp report DIR --markdown` come out as text. Under 5 s (one CLI call)."""
    from rlntp.report import claims_markdown

    section = tmp_path / "hostile"
    section.mkdir()
    claim = {"claim": "Fig. 1: <script>alert(1)</script> holds", "criterion": "a [link](javascript:alert(1)) and "
             "![pixel](http://example.com/p.png) and <img src=x onerror=alert(1)>",
             "verdict": "reproduced", "evidence": "&lt;b&gt; | an injected cell\n| a | new | row |"}
    (section / "report.json").write_text(json.dumps({"recipe": "fig1<iframe src=x>", "preset": "cpu",
                                                     "claims": [claim]}))
    text = claims_markdown(tmp_path)
    result, _ = rlntp("report", str(tmp_path), "--markdown")
    assert result.returncode == 0 and result.stdout == text, result.stderr
    rows = text.splitlines()
    assert len(rows) == 3 and rows[2].count(" | ") == 4  # header, rule, one row of five cells
    for raw in ("<script", "<img", "<iframe", "&lt;b"):
        assert raw not in text, raw
    assert not re.search(r"(?<!\\)[][]", text.replace("\\\\", "")), "an unescaped bracket: a link or an image"
    assert "&lt;script>alert(1)&lt;/script>" in text and "\\[link\\](javascript" in text
    assert "&amp;lt;b&amp;gt; \\| an injected cell \\| a \\| new \\| row \\|" in text


@pytest.mark.unit
def test_the_notebook_writes_under_an_ignored_directory():
    """examples/quickstart.ipynb names only paths under runs/ (its runs and its figure), and examples/runs/ is ignored
    by git, so executing it in the checkout leaves no untracked file (tests/test_notebook.py runs it and checks
    that it wrote nothing else). Under 1 s."""
    notebook = json.loads((ROOT / "examples" / "quickstart.ipynb").read_text())
    code = "".join("".join(cell["source"]) for cell in notebook["cells"] if cell["cell_type"] == "code")
    assert '"runs/quickstart/quickstart.png"' in code and '"quickstart.png"' not in code
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    ignored = subprocess.run(["git", "check-ignore", "-q", "examples/runs/quickstart/quickstart.png"], cwd=ROOT)
    assert ignored.returncode == 0, "examples/runs/ is not ignored by git"
