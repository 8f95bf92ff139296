"""The stepwise reward of GSM8K and MATH responses (paper App. B.3), checked by math-verify under a hard time limit.

    +5    an `<answer>...</answer>` tag is present
    +5    a `<think>...</think>` tag is present
    +20   the right answer appears anywhere in the response
    +100  the answer tag holds the right answer

How an answer is read. Gold answers and candidates are read as LaTeX first (math-verify's LaTeX reader on the
whole text), so `3\\sqrt{13}`, `6 - 5i`, `\\left( 3, \\frac{\\pi}{2} \\right)`, `10,\\!080`, `7,9,12,13`, matrices,
intervals, `\\text{...}`, `90^\\circ`, `50\\%` and `\\$18` keep their meaning; plain text that reads as one number
with optional units (`18 dollars`) counts as that number. The answer tag holds *one* answer: when it writes
several (`$19$ or $18$`, `\\boxed{}`s and `$...$` spans), every one must be right, and undelimited text must read
as a whole (`19 or 18` is the set {18, 19}, `not 18` is a product of symbols: neither is 18). Equivalence is
math-verify's (`18` = `18.0` = `$18`, `\\frac{3}{4}` = `0.75`, `x = 5` = `5`). math-verify bounds its own
work with `signal.alarm`, which works only in a process's main thread and cannot interrupt every
blow-up in sympy; TRL may call rewards from any thread. So the checks run in a worker process
(`python -m rlntp.llm.reward`, talking JSON lines over pipes), each under a wall-clock deadline: past
it the worker is killed (a fresh one starts on the next check) and the component scores 0. Training
never waits longer than the deadline for one response.
"""

import atexit
import json
import os
import re
import select
import subprocess
import sys
import threading
import time
from typing import Any, Callable

from rlntp.errors import check
from rlntp.tasks.math_text import boxed

REWARD_POINTS = {"answer_tag": 5.0, "think_tag": 5.0, "correct_anywhere": 20.0, "correct_in_answer": 100.0}
"""Points of each component (App. B.3); a response scores their sum."""

MAX_CANDIDATES = 32
"""Expressions of one response checked for `correct_anywhere` (its last ones: answers come late)."""

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)
_MATH_SPAN = re.compile(r"(?<!\\)\$\$(.+?)(?<!\\)\$\$|(?<!\\)\$(.+?)(?<!\\)\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")


def as_text(response: Any) -> str:
    """A response as a clean str: bytes decoded (bad bytes replaced), lone surrogates replaced, None empty."""
    if response is None:
        return ""
    if isinstance(response, bytes):
        return response.decode("utf-8", errors="replace")
    return str(response).encode("utf-8", errors="replace").decode("utf-8")


def think_text(response: str) -> str | None:
    """The content of the first complete think tag, or None."""
    found = _THINK.search(response)
    return found.group(1) if found else None


def answer_in_tag(response: str) -> str | None:
    """The content of the last complete answer tag, or None."""
    found = _ANSWER.findall(response)
    return found[-1].strip() if found else None


def delimited(text: str) -> list[str]:
    """The content of every `\\boxed{}` and every `$...$`, `\\(...\\)`, `\\[...\\]` span of `text`."""
    found = [content for _, content in boxed(text)]
    return found + [next(g for g in m.groups() if g is not None) for m in _MATH_SPAN.finditer(text)]


def answers_in(text: str) -> list[str]:
    """The answers written in `text` (an answer tag's content): its delimited ones (`delimited`) if it has any,
    else the whole text as one answer."""
    found = [f.strip() for f in delimited(text) if f.strip()]
    return found or ([text.strip()] if text.strip() else [])


def candidates(response: str) -> list[str]:
    """Everything in `response` that could be its answer, for `correct_anywhere`: the answers in its answer tag,
    every delimited answer (`delimited`) and number; the last MAX_CANDIDATES."""
    found = delimited(response) + _NUMBER.findall(response)
    tagged = answer_in_tag(response)
    found += answers_in(tagged) if tagged else []
    unique = list(dict.fromkeys(c.strip() for c in found if c and c.strip()))
    return unique[-MAX_CANDIDATES:]


_UNESCAPED_DOLLAR = re.compile(r"(?<!\\)\$")
_NUMBER_WITH_UNITS = re.compile(r"(?:\\?\$\s*)?(-?\d[\d,]*(?:\.\d+)?)\s*(?:[A-Za-z][A-Za-z\s%/-]*)?\.?")
"""A number, perhaps after a dollar sign, perhaps followed by words (units): `$18`, `18 dollars`, `18 apples.`"""


def read(text: str) -> list:
    """math-verify's reading of one answer, as LaTeX: `3\\sqrt{13}` is 3√13, `10,\\!080` is 10080, `7,9,12,13` a set,
    `\\left( 3, \\frac{\\pi}{2} \\right)` a tuple (a currency `$` is dropped). Empty when it does not read."""
    from math_verify import LatexExtractionConfig, parse

    return parse(f"${_UNESCAPED_DOLLAR.sub('', text).strip()}$", [LatexExtractionConfig()])


def _read_plain(text: str) -> list:
    """The number of a plain-text answer that is one number with optional units (`18 dollars`); else empty.
    Only a whole-text match counts, so `19 or 18` and `not 18` read as nothing."""
    from math_verify import ExprExtractionConfig, parse

    found = _NUMBER_WITH_UNITS.fullmatch(text.strip())
    return parse(found.group(1), [ExprExtractionConfig()]) if found else []


def _matches(gold: list, text: str) -> bool:
    """Whether one answer `text` is the gold reading: as LaTeX, or as a number with units."""
    from math_verify import verify

    if verify(gold, read(text)):
        return True
    plain = _read_plain(text)
    return bool(plain) and verify(gold, plain)


def _check(gold: str, texts: list[str], need: str) -> bool:
    """Whether any (need="any") or every (need="all", at least one) text is the gold answer."""
    target = read(gold) or _read_plain(gold)
    if not target or not texts:
        return False
    results = (_matches(target, text) for text in texts)
    return all(results) if need == "all" else any(results)


def _serve() -> None:
    """The worker's loop: one JSON request per line on stdin ({"gold", "texts", "need"}), one line "1" or "0" back."""
    channel = os.fdopen(os.dup(1), "w")
    sys.stdout = sys.stderr  # whatever sympy or math-verify print must not land in the answers
    import math_verify  # noqa: F401  (imported before "ready", so no deadline pays for it)

    channel.write("ready\n")
    channel.flush()
    for line in sys.stdin:
        try:
            request = json.loads(line)
            result = _check(request["gold"], request["texts"], request.get("need", "any"))
        except Exception:  # math-verify or sympy failed on this input: not equivalent
            result = False
        channel.write("1\n" if result else "0\n")
        channel.flush()


class Verifier:
    """math-verify in a worker process, each check under a wall-clock deadline; usable from any thread.

    The worker is a fresh interpreter (not a fork of the trainer: no torch threads or locks, and no
    re-import of the caller's main module). Use it as a context manager, or call `close()`.
    """

    def __init__(self, timeout_s: float = 5.0, startup_timeout_s: float = 120.0):
        check(timeout_s > 0, f"the verification time limit must be > 0 seconds, got {timeout_s}")
        self.timeout_s, self.startup_timeout_s = timeout_s, startup_timeout_s
        self.timeouts = 0
        """checks that ran past the deadline (their worker was killed)"""
        self._lock = threading.Lock()
        self._process: subprocess.Popen | None = None

    def __enter__(self) -> "Verifier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the worker (a later check starts a new one)."""
        with self._lock:
            self._stop()

    def equivalent(self, gold: str, answer: str) -> bool:
        """Whether the answer tag's content `answer` is the gold answer: every answer written in it (`answers_in`)
        is, so `$19$ or $18$` is not 18; False past the deadline."""
        return self._ask(gold, answers_in(as_text(answer)), "all")

    def any_equivalent(self, gold: str, texts: list[str]) -> bool:
        """Whether any of `texts` (single answers) is the gold answer, decided within one deadline; False past it."""
        return self._ask(gold, texts, "any")

    def _ask(self, gold: str, texts: list[str], need: str) -> bool:
        if not texts:
            return False
        request = json.dumps({"gold": as_text(gold), "texts": [as_text(t) for t in texts], "need": need}) + "\n"
        with self._lock:
            if self._process is None or self._process.poll() is not None:
                self._start()
            try:
                self._process.stdin.write(request.encode())
                self._process.stdin.flush()
                answer = self._read_line(self.timeout_s)
            except OSError:  # the worker died on this input
                answer = None
            if answer is None:
                self.timeouts += 1
                self._stop()
            return answer == "1"

    def _start(self) -> None:
        self._process = subprocess.Popen([sys.executable, "-m", "rlntp.llm.reward"], stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        if self._read_line(self.startup_timeout_s) != "ready":
            self._stop()
            raise RuntimeError(f"the math-verify worker did not start within {self.startup_timeout_s:g} s "
                               f"({sys.executable} -m rlntp.llm.reward)")

    def _read_line(self, timeout_s: float) -> str | None:
        """One line from the worker, or None if none comes within `timeout_s` or the worker ended."""
        fd, data, deadline = self._process.stdout.fileno(), b"", time.monotonic() + timeout_s
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 64)
            if not chunk:
                return None
            data += chunk
        return data.decode().strip()

    def _stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            for pipe in (self._process.stdin, self._process.stdout):
                pipe.close()
        self._process = None


_SHARED: dict[float, Verifier] = {}


def shared_verifier(timeout_s: float = 5.0) -> Verifier:
    """This process's Verifier for a deadline, its worker kept between uses and stopped at exit. Starting a
    worker costs ~1.4 s (a fresh interpreter importing math-verify and sympy), more than scoring an evaluation's
    responses on a small model, and a recipe runs dozens of evaluations and GRPO runs in one process."""
    if not _SHARED:
        atexit.register(lambda: [verifier.close() for verifier in _SHARED.values()])
    if timeout_s not in _SHARED:
        _SHARED[timeout_s] = Verifier(timeout_s)
    return _SHARED[timeout_s]


def score(response: Any, gold: str, verifier: Verifier) -> dict[str, float]:
    """The points of each component (REWARD_POINTS) for one response to a question whose answer is `gold`."""
    text = as_text(response)
    tagged = answer_in_tag(text)
    in_answer = tagged is not None and verifier.equivalent(gold, tagged)
    anywhere = in_answer or verifier.any_equivalent(gold, candidates(text))
    return {"answer_tag": REWARD_POINTS["answer_tag"] * (tagged is not None),
            "think_tag": REWARD_POINTS["think_tag"] * (think_text(text) is not None),
            "correct_anywhere": REWARD_POINTS["correct_anywhere"] * anywhere,
            "correct_in_answer": REWARD_POINTS["correct_in_answer"] * in_answer}


def completion_text(completion: Any) -> str:
    """The text of a TRL completion: a string, or (conversational) the assistant messages' contents."""
    if isinstance(completion, list):
        return "".join(as_text(m.get("content")) for m in completion if m.get("role", "assistant") == "assistant")
    return as_text(completion)


def reward_functions(verifier: Verifier) -> list[Callable[..., list[float]]]:
    """One TRL reward function per component, named after it, so GRPOTrainer sums them (weight 1) and logs each
    (`rewards/NAME/mean`). Each response is scored once for all four (a small cache keyed by text and gold)."""
    cache: dict[tuple[str, str], dict[str, float]] = {}

    def scores(completions, answer) -> list[dict[str, float]]:
        results = []
        for completion, gold in zip(completions, answer, strict=True):
            key = (completion_text(completion), str(gold))
            if key not in cache:
                if len(cache) > 10_000:
                    cache.clear()
                cache[key] = score(key[0], key[1], verifier)
            results.append(cache[key])
        return results

    def component(name: str):
        def reward(prompts, completions, answer, **kwargs) -> list[float]:
            return [s[name] for s in scores(completions, answer)]

        reward.__name__ = reward.__qualname__ = name
        return reward

    return [component(name) for name in REWARD_POINTS]


if __name__ == "__main__":
    _serve()
