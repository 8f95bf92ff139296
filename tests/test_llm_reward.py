"""The stepwise reward (App. B.3) on hand-written responses, and its hard time limit."""

import threading
import time
from pathlib import Path

import pytest

from rlntp.errors import ConfigError
from rlntp.llm.reward import REWARD_POINTS, Verifier, answer_in_tag, answers_in, candidates, reward_functions, score
from rlntp.llm.reward_check import measure

pytestmark = pytest.mark.unit

REAL = Path(__file__).parent / "data" / "real"

HANG = "(10^{10^{10}})!"
"""math-verify's verify runs for minutes on this against 18 (measured: killed after 60 s without its own timeout)."""


@pytest.fixture(scope="module")
def verifier():
    with Verifier(timeout_s=2.0) as v:
        yield v


def points(answer_tag=0, think_tag=0, correct_anywhere=0, correct_in_answer=0):
    return {"answer_tag": 5.0 * answer_tag, "think_tag": 5.0 * think_tag, "correct_anywhere": 20.0 * correct_anywhere,
            "correct_in_answer": 100.0 * correct_in_answer}


@pytest.mark.parametrize("response, gold, expected", [
    ("<think>48/2 = 24, 48 + 24 = 72</think> <answer>72</answer>", "72", points(1, 1, 1, 1)),
    ("<think>so she sold 72 clips</think> <answer>70</answer>", "72", points(1, 1, 1, 0)),   # right, outside the tag
    ("<think>48 + 24</think> <answer>70</answer>", "72", points(1, 1, 0, 0)),                 # wrong
    ("<think></think> <answer>18</answer>", "18", points(1, 1, 1, 1)),                      # short answer
    ("<answer>18.0</answer>", "18", points(1, 0, 1, 1)),
    ("<answer>$18</answer>", "18", points(1, 0, 1, 1)),
    ("<answer>\\$18</answer>", "18", points(1, 0, 1, 1)),
    ("<answer>\\frac{3}{4}</answer>", "0.75", points(1, 0, 1, 1)),                           # LaTeX fraction
    ("<answer>0.75</answer>", "\\frac{3}{4}", points(1, 0, 1, 1)),
    ("<answer>\\dfrac{3}{4}</answer>", "3/4", points(1, 0, 1, 1)),
    ("<answer>\\frac{2\\sqrt{2}}{2}</answer>", "\\sqrt{2}", points(1, 0, 1, 1)),              # simplified by sympy
    ("The answer is 18.", "18", points(0, 0, 1, 0)),                                          # no tags at all
    ("<think>reasoning</think> 18", "18", points(0, 1, 1, 0)),
    ("<answer>18", "18", points(0, 0, 1, 0)),                                                 # unclosed tag
    ("", "18", points()),
    ("<answer></answer>", "18", points(1, 0, 0, 0)),
    (b"\xff\xfe<answer>18</answer>", "18", points(1, 0, 1, 1)),                               # not UTF-8
    ("\udcff\x00<think>\udc80</think><answer>18</answer>", "18", points(1, 1, 1, 1)),          # lone surrogates, NUL
    (None, "18", points()),
    # real MATH answers, read as LaTeX: never one number taken out of them
    ("<answer>3\\sqrt{13}</answer>", "3\\sqrt{13}", points(1, 0, 1, 1)),                  # surds
    ("<answer>\\sqrt{117}</answer>", "3\\sqrt{13}", points(1, 0, 1, 1)),
    ("<answer>3</answer>", "3\\sqrt{13}", points(1, 0, 0, 0)),
    ("<answer>6 - 5i</answer>", "6 - 5i", points(1, 0, 1, 1)),                                # complex numbers
    ("<answer>5</answer>", "6 - 5i", points(1, 0, 0, 0)),
    ("<answer>$(3, \\frac{\\pi}{2})$</answer>", "\\left( 3, \\frac{\\pi}{2} \\right)", points(1, 0, 1, 1)),  # tuples
    ("<answer>3</answer>", "\\left( 3, \\frac{\\pi}{2} \\right)", points(1, 0, 0, 0)),
    ("<answer>[2,5)</answer>", "[2,5)", points(1, 0, 1, 1)),                                  # intervals
    ("<answer>(2,5]</answer>", "[2,5)", points(1, 0, 0, 0)),
    ("<answer>x^5 - x^4 + x^3 - x^2 + x - 1</answer>", "x^5 - x^4 + x^3 - x^2 + x - 1", points(1, 0, 1, 1)),
    ("<answer>1</answer>", "x^5 - x^4 + x^3 - x^2 + x - 1", points(1, 0, 0, 0)),             # polynomials
    ("<answer>\\boxed{p - q}</answer>", "p - q", points(1, 0, 1, 1)),                          # expressions
    ("<answer>10080</answer>", "10,\\!080", points(1, 0, 1, 1)),                              # thousands separators
    ("<answer>10</answer>", "10,\\!080", points(1, 0, 0, 0)),
    ("<answer>1,000</answer>", "1000", points(1, 0, 1, 1)),
    ("<answer>13, 12, 9, 7</answer>", "7,9,12,13", points(1, 0, 1, 1)),                      # lists
    ("<answer>7.9</answer>", "7,9,12,13", points(1, 0, 0, 0)),
    ("<answer>$\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}$</answer>", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
     points(1, 0, 1, 1)),                                                                    # matrices
    ("<answer>2</answer>", "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", points(1, 0, 0, 0)),
    ("<answer>Evelyn</answer>", "\\text{Evelyn}", points(1, 0, 1, 1)),                         # text answers
    ("<answer>Briana</answer>", "\\text{Evelyn}", points(1, 0, 0, 0)),
    ("<answer>\\$18.90</answer>", "\\$18.90", points(1, 0, 1, 1)),                             # currency and units
    ("<answer>18.90 dollars</answer>", "\\$18.90", points(1, 0, 1, 1)),
    ("<answer>18 apples.</answer>", "18", points(1, 0, 1, 1)),
    ("<answer>90^\\circ</answer>", "90^\\circ", points(1, 0, 1, 1)),                            # degrees
    ("<answer>90</answer>", "90^\\circ", points(1, 0, 1, 1)),
    ("<answer>50\\%</answer>", "50\\%", points(1, 0, 1, 1)),                                     # percentages
    ("<answer>0.5</answer>", "50\\%", points(1, 0, 1, 1)),
    # one answer in the tag: several candidates are rewarded only when every one is right
    ("<answer>19 or 18</answer>", "18", points(1, 0, 1, 0)),
    ("<answer>not 18</answer>", "18", points(1, 0, 1, 0)),
    ("<answer>$19$ or $18$</answer>", "18", points(1, 0, 1, 0)),
    ("<answer>$18$, that is $\\boxed{18}$</answer>", "18", points(1, 0, 1, 1)),
])
def test_stepwise_reward_of_hand_written_responses(verifier, response, gold, expected):
    assert score(response, gold, verifier) == expected


def test_answer_tag_and_candidates():
    assert answer_in_tag("<answer>1</answer> then <answer> 2 </answer>") == "2"
    assert answer_in_tag("<answer>1") is None
    found = candidates("First $x = 3$, so \\boxed{\\frac{1}{2}} and 1,234 items; <answer>7</answer>")
    assert {"x = 3", "\\frac{1}{2}", "1,234", "7"} <= set(found) and len(candidates(" 1" * 500)) <= 32
    assert answers_in("$19$ or \\boxed{18}") == ["18", "19"] and answers_in(" 19 or 18 ") == ["19 or 18"]
    assert answers_in("\\$5 and \\$6") == ["\\$5 and \\$6"]  # escaped dollars open no math span


@pytest.mark.integration
def test_a_hanging_expression_returns_within_the_limit_and_the_next_check_works(verifier):
    before = verifier.timeouts
    started = time.monotonic()
    result = score(f"<think>x</think> <answer>{HANG}</answer>", "18", verifier)
    elapsed = time.monotonic() - started
    assert result == points(1, 1, 0, 0)
    assert verifier.timeouts > before
    # two checks (the tag, then anywhere) at 2 s each and the worker restarts after them (~1.4 s each when idle,
    # several times that under a loaded suite): half the hang's minute leaves room for any load, and a limit that did
    # not hold would take the whole minute
    assert elapsed < 30, elapsed
    assert score("<answer>18</answer>", "18", verifier) == points(1, 0, 1, 1)  # a fresh worker took over


@pytest.mark.integration
def test_the_limit_holds_off_the_main_thread():
    """The limit holds where signals cannot (a thread other than the main one): the hang comes back in well under the
    minute it would otherwise run (HANG: killed after 60 s), whatever the load on the machine."""
    results = {}

    def work():
        with Verifier(timeout_s=1.0) as v:
            results["hang"] = score(f"<answer>{HANG}</answer>", "18", v)
            results["ok"] = score("<answer>\\frac{1}{2}</answer>", "0.5", v)

    thread = threading.Thread(target=work)
    started = time.monotonic()
    thread.start()
    thread.join(timeout=60)
    elapsed = time.monotonic() - started
    # three worker starts (~1.4 s each when idle, several times that under a loaded suite) and two 1 s limits: half
    # the hang's minute leaves room for any load, and a limit that did not hold would take the whole minute
    assert not thread.is_alive() and elapsed < 30, elapsed
    assert results == {"hang": points(1, 0, 0, 0), "ok": points(1, 0, 1, 1)}


def test_trl_reward_functions_log_each_component(verifier):
    functions = reward_functions(verifier)
    assert [f.__name__ for f in functions] == list(REWARD_POINTS)
    completions = [[{"role": "assistant", "content": "<think>a</think> <answer>4</answer>"}],
                   [{"role": "assistant", "content": "<answer>5</answer>"}], "no tags, 4"]
    rewards = {f.__name__: f(prompts=["p"] * 3, completions=completions, answer=["4", "4", "4"], completion_ids=None)
               for f in functions}
    assert rewards == {"answer_tag": [5.0, 5.0, 0.0], "think_tag": [5.0, 0.0, 0.0],
                       "correct_anywhere": [20.0, 0.0, 20.0], "correct_in_answer": [100.0, 0.0, 0.0]}


def test_limit_must_be_positive():
    with pytest.raises(ConfigError, match="must be > 0"):
        Verifier(timeout_s=0)


@pytest.mark.parametrize("name, dataset", [("math500_train.jsonl", "math"), ("math500_test.jsonl", "math"),
                                           ("gsm8k_test.jsonl", "gsm8k")])
@pytest.mark.integration
def test_real_gold_answers_are_rewarded_and_wrong_ones_are_not(verifier, name, dataset):
    """Every gold answer of the real samples, written as itself, as $...$ and as \\boxed{...}, earns the answer
    points; another record's answer, "OTHER or GOLD" and the gold's first number alone do not, unless they are the
    gold without its unit, base or brackets (`reward_check`; on all of MATH-500 and the GSM8K test set: docs/llm.md)."""
    result = measure(REAL / name, dataset, verifier)
    assert result["answer_field_equal"] in (None, result["records"])
    assert result["correct_not_rewarded"] == [] and result["wrong_rewarded"] == []
    assert result["wrong_checks"] >= 2 * result["records"]
