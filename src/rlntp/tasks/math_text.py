"""GSM8K and MATH as long/short mixtures for pretrained LLMs (paper §5.2, App. B.3-B.4).

A record's solution is split into its chain of thought and its final answer, and the target keeps
the chain of thought with probability p_cot. One GSM8K record, long and short:

    question:  Natalia sold clips to 48 of her friends in April, and then she sold half as many
               clips in May. How many clips did Natalia sell altogether in April and May?
    answer:    Natalia sold 48/2 = <<48/2=24>>24 clips in May.
               Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.
               #### 72
    prompt:    A conversation between User and Assistant. [...] User: Natalia sold clips [...] Assistant:
    long:      <think>Natalia sold 48/2 = <<48/2=24>>24 clips in May.
               Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May.</think> <answer>72</answer>
    short:     <think></think> <answer>72</answer>

GSM8K prompts are plain text (the paper's preamble, for a base model); MATH prompts are chat
messages (system, user) that the instruct model's own chat template renders, which for Llama 3.1
instruct is exactly the paper's string. Chains of thought and answers are stripped of surrounding
whitespace. This module reads no model and imports neither torch nor TRL.
"""

import re
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from rlntp.errors import ConfigError, check, check_choice

SYSTEM_TEXT = (
    "A conversation between User and Assistant. The user asks a question, and the Assistant solves it. "
    "The assistant first thinks about the reasoning process in the mind and then provides the user with the "
    "answer. The reasoning process and answer are enclosed within <think></think> and <answer></answer> tags, "
    "respectively, i.e., <think>reasoning process here</think> <answer>answer here</answer>."
)
"""The instructions shared by both datasets' prompts (App. B.3)."""

GSM8K_PROMPT = SYSTEM_TEXT + " User: {question} Assistant: "
"""GSM8K's prompt for a base model, no loss on it (App. B.3)."""

MATH_SYSTEM = SYSTEM_TEXT + " Inside the answer tag, put only the answer and no additional commentary."
"""MATH's system message, rendered by the instruct model's chat template (App. B.4)."""


def target(cot: str, answer: str) -> str:
    """The completion the model learns: `<think>{cot}</think> <answer>{answer}</answer>` (cot may be empty)."""
    return f"<think>{cot}</think> <answer>{answer}</answer>"


def split_gsm8k(solution: str) -> tuple[str, str] | None:
    """(chain of thought, answer) of a GSM8K answer: before and after its last `####`; None without one."""
    cot, sep, answer = solution.rpartition("####")
    if not sep or not answer.strip():
        return None
    return cot.strip(), answer.strip()


def _closing(text: str, begin: int) -> int | None:
    """The index of the `}` closing the group whose `{` ends just before `begin`; None if it never closes.

    A backslash escapes the character after it, so `\\{` is an escaped brace and `\\\\}` a line break
    followed by a closing one.
    """
    depth, i = 0, begin
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            if depth == 0:
                return i
            depth -= 1
        i += 1
    return None


def boxed(text: str) -> list[tuple[int, str]]:
    """(start, content) of every closed `\\boxed{...}` in `text`, nested ones included, braces counted.

    A lazy regex would stop at the first `}` and truncate `\\boxed{\\frac{1}{2}}` to `\\frac{1`.
    """
    found = []
    for match in re.finditer(r"\\boxed\{", text):
        end = _closing(text, match.end())
        if end is not None:
            found.append((match.start(), text[match.end():end]))
    return found


def last_boxed(text: str) -> tuple[int, str] | None:
    """(start, content) of the last outermost `\\boxed{...}` in `text`, boxes around its whole content unwrapped
    (`\\boxed{\\boxed{x}}` holds x); None if there is none or the last one never closes."""
    last, end = None, 0
    for match in re.finditer(r"\\boxed\{", text):
        if match.start() < end:  # inside the box before it
            continue
        close = _closing(text, match.end())
        if close is None:
            return None
        last, end = (match.start(), text[match.end():close]), close + 1
    if last is None:
        return None
    start, content = last
    while (inner := boxed(content.strip())) and inner[0][0] == 0 and len(inner[0][1]) + 8 == len(content.strip()):
        content = inner[0][1]
    return start, content


def split_math(solution: str) -> tuple[str, str] | None:
    """(chain of thought, answer) of a MATH solution: the text before its last `\\boxed{}`, and the box's content."""
    boxed = last_boxed(solution)
    if boxed is None or not boxed[1].strip():
        return None
    start, answer = boxed
    return solution[:start].strip(), answer.strip()


def gsm8k_prompt(question: str) -> str:
    """GSM8K's prompt: the paper's preamble around the question."""
    return GSM8K_PROMPT.format(question=question.strip())


def math_prompt(question: str) -> list[dict[str, str]]:
    """MATH's prompt: a system and a user message, for the instruct model's chat template."""
    return [{"role": "system", "content": MATH_SYSTEM}, {"role": "user", "content": question.strip()}]


@dataclass(frozen=True)
class Dataset:
    """How one benchmark's records become prompts and targets."""

    name: str
    question: str
    """column of the question"""
    solution: str
    """column of the worked solution holding the final answer"""
    split: Callable[[str], tuple[str, str] | None]
    """solution -> (chain of thought, answer), None when it cannot be split"""
    prompt: Callable[[str], Any]
    """question -> prompt (a string, or chat messages)"""
    needs: str
    """what a solution must contain to be split, for messages"""
    chat: bool
    """prompts and completions are chat messages (TRL's conversational format)"""


DATASETS = {
    "gsm8k": Dataset("gsm8k", "question", "answer", split_gsm8k, gsm8k_prompt, "'#### <answer>'", chat=False),
    "math": Dataset("math", "problem", "solution", split_math, math_prompt, "a closed '\\boxed{...}'", chat=True),
}


def dataset_format(name: str) -> Dataset:
    """The format of benchmark `name` (gsm8k or math)."""
    check_choice("dataset", name, DATASETS)
    return DATASETS[name]


def check_columns(fmt: Dataset, columns: list[str], source: str) -> None:
    """ConfigError naming the missing columns unless `columns` hold the question and the solution."""
    missing = [c for c in (fmt.question, fmt.solution) if c not in columns]
    check(not missing, f"{source} has no column {' or '.join(map(repr, missing))}; {fmt.name} records need "
          f"{fmt.question!r} and {fmt.solution!r} (found: {', '.join(columns) or 'no columns'})")


def to_example(fmt: Dataset, question: str, solution: str, long: bool) -> dict[str, Any] | None:
    """One row of TRL's prompt-completion format (plus the gold `answer` and whether it is `long`); None if unsplittable."""
    parts = fmt.split(solution)
    if parts is None:
        return None
    cot, answer = parts
    completion = target(cot if long else "", answer)
    if fmt.chat:
        completion = [{"role": "assistant", "content": completion}]
    return {"prompt": fmt.prompt(question), "completion": completion, "answer": answer, "long": long}


@dataclass(frozen=True)
class Mixture:
    """The SFT and RL halves of a mixture, the test split, and the rows that could not be split."""

    sft: list[dict[str, Any]]
    rl: list[dict[str, Any]]
    test: list[dict[str, Any]]
    unsplittable: dict[str, list[int]]
    """split name -> row numbers (in the source) whose solution has no answer to take"""


def make_mixture(fmt: Dataset, train: list[dict[str, Any]], test: list[dict[str, Any]], p_cot: float,
                 seed: int) -> Mixture:
    """Split `train` into two seeded halves (SFT, RL) and keep each target's chain of thought with probability p_cot.

    Row i's decision is `uniform_i < p_cot` with one seeded uniform per row, so the long rows at a smaller
    p_cot stay long at a larger one. Test rows keep their chain of thought (it is the reference, not a target).
    """
    check(0.0 <= p_cot <= 1.0, f"p_cot must be in [0, 1], got {p_cot}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train))
    keep = rng.random(len(train)) < p_cot
    unsplittable: dict[str, list[int]] = {"train": [], "test": []}
    examples = []
    for i in order.tolist():
        example = to_example(fmt, train[i][fmt.question], train[i][fmt.solution], bool(keep[i]))
        if example is None:
            unsplittable["train"].append(i)
        else:
            examples.append(example | {"row": i})
    tests = []
    for i, record in enumerate(test):
        example = to_example(fmt, record[fmt.question], record[fmt.solution], True)
        if example is None:
            unsplittable["test"].append(i)
        else:
            tests.append(example | {"row": i})
    half = (len(examples) + 1) // 2
    if len(examples) < 2:
        raise ConfigError(f"{len(examples)} usable {fmt.name} training record(s); the SFT and RL halves need "
                          f"at least 2 ({len(unsplittable['train'])} had no {fmt.needs})")
    if test and not tests:  # an empty test split would fail the first evaluation, after training
        raise ConfigError(f"0 usable {fmt.name} test record(s) of {len(test)}: none has {fmt.needs}")
    return Mixture(examples[:half], examples[half:], tests,
                   {k: sorted(v) for k, v in unsplittable.items()})
