"""The stepwise reward measured on real records: is every gold answer rewarded, and no wrong one?

    python -m rlntp.llm.reward_check --math math500.jsonl --gsm8k gsm8k_test.jsonl [--out report.json]

For each record the gold answer (split from its solution as `rlntp llm data` does) is written in the answer tag
three ways (as itself, as `$...$`, as `\\boxed{...}`) after the record's own chain of thought, and must earn
`correct_in_answer`. Wrong answers must not: another record's answer (the next one that is not the same value, below),
"OTHER or GOLD" (two answers in one tag), and the gold's first number alone where the gold is more than that
number (`3` for `3\\sqrt{13}`: what a plain-text reader takes from it). A wrong-looking answer that is the gold
without its unit, degree sign, currency, base subscript, `x =` or brackets (`30` for `30^\\circ`) is rewarded on
purpose and counted apart. Prints the counts and every failure.
"""

import argparse
import json
import re
import time
from pathlib import Path
from typing import Any

from rlntp.llm.reward import Verifier, score
from rlntp.tasks.math_text import DATASETS, target

FORMS = {"itself": "{}", "$...$": "${}$", "\\boxed{}": "\\boxed{{{}}}"}
"""How the gold answer is written in the answer tag."""

_FIRST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_DECORATION = re.compile(r"\^\\circ|\^\{\\circ\}|\\(?:text|mbox)\{[^}]*\}(?:\^\d)?|\\\$|_\{?\d+\}?|^[a-z]=|[()\s]")


def same_value(gold: str, answered: str) -> bool:
    """Whether `answered` is `gold` without its unit, degree sign, currency, base subscript, `x =` or brackets: a
    right answer written another way, which the reward accepts (`30` for `30^\\circ`, `52` for `52_8`)."""
    return _DECORATION.sub("", gold) == _DECORATION.sub("", answered)


def golds(path: Path, dataset: str) -> tuple[list[tuple[str, str]], int | None]:
    """(chain of thought, answer) of every record of a JSONL file, split as `rlntp llm data` does, and how many of
    the answers equal the records' own `answer` field (MATH-500 has one; None without)."""
    fmt = DATASETS[dataset]
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    split = [fmt.split(r[fmt.solution]) for r in rows]
    unsplittable = [i for i, s in enumerate(split) if s is None]
    if unsplittable:
        raise ValueError(f"{path}: records {unsplittable[:10]} have no answer to split off")
    same = sum(s[1] == r["answer"] for s, r in zip(split, rows)) if dataset == "math" and all(
        "answer" in r for r in rows) else None
    return split, same


def measure(path: Path, dataset: str, verifier: Verifier) -> dict[str, Any]:
    """The checks of the module docstring on the records of `path` (JSONL of `dataset` records): the counts, and
    every case that failed ("correct_not_rewarded", "wrong_rewarded") or was accepted as the same value."""
    pairs, same_field = golds(path, dataset)
    answers = [a for _, a in pairs]
    missed, rewarded, same, wrong_checks, started = [], [], [], 0, time.monotonic()
    for i, (cot, gold) in enumerate(pairs):
        for name, form in FORMS.items():
            if not score(f"<think>{cot}</think> <answer>{form.format(gold)}</answer>", gold,
                         verifier)["correct_in_answer"]:
                missed.append({"record": i, "form": name, "gold": gold})
        other = next((answers[j % len(answers)] for j in range(i + 1, i + len(answers))
                      if not same_value(gold, answers[j % len(answers)])), None)
        wrong = {"another record's answer": other, "two answers": f"{other} or {gold}"} if other else {}
        number = _FIRST_NUMBER.search(gold)
        if number and number.group() != gold.strip():
            wrong["the gold's first number"] = number.group()
        for kind, answer in wrong.items():
            wrong_checks += 1
            if score(target("", answer), gold, verifier)["correct_in_answer"]:
                case = {"record": i, "kind": kind, "gold": gold, "answered": answer}
                (same if same_value(gold, answer) else rewarded).append(case)
    return {"file": path.name, "records": len(pairs), "answer_field_equal": same_field,
            "seconds": round(time.monotonic() - started, 1), "timeouts": verifier.timeouts,
            "correct_checks": len(FORMS) * len(pairs), "wrong_checks": wrong_checks,
            "correct_not_rewarded": missed, "wrong_rewarded": rewarded, "same_value_rewarded": same}


def report(result: dict[str, Any]) -> None:
    """Print a measurement's counts and every case behind them."""
    missed, rewarded, same = result["correct_not_rewarded"], result["wrong_rewarded"], result["same_value_rewarded"]
    if result["answer_field_equal"] is not None:
        print(f"{result['file']}: the answer split from the solution equals the record's `answer` field "
              f"{result['answer_field_equal']}/{result['records']} times")
    print(f"{result['file']}: {result['records']} records in {result['seconds']} s; correct answers not rewarded "
          f"{len(missed)}/{result['correct_checks']} ({len(missed) / result['correct_checks']:.2%}), wrong answers "
          f"rewarded {len(rewarded)}/{result['wrong_checks']} ({len(rewarded) / max(result['wrong_checks'], 1):.2%}), "
          f"the same value without its unit, base or brackets accepted {len(same)} times")
    for case in missed:
        print(f"  not rewarded: record {case['record']}, {case['form']}: {case['gold']!r}")
    for case in rewarded:
        print(f"  rewarded: record {case['record']} ({case['kind']}): gold {case['gold']!r}, "
              f"answered {case['answered']!r}")
    for case in same:
        print(f"  accepted: record {case['record']} ({case['kind']}): gold {case['gold']!r}, "
              f"answered {case['answered']!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--math", type=Path, help="MATH records (problem, solution), JSONL")
    parser.add_argument("--gsm8k", type=Path, help="GSM8K records (question, answer), JSONL")
    parser.add_argument("--out", type=Path, help="also write the counts and cases here (JSON)")
    args = parser.parse_args()
    results = []
    with Verifier(timeout_s=10.0) as verifier:
        for dataset in ("math", "gsm8k"):
            if getattr(args, dataset) is not None:
                results.append(measure(getattr(args, dataset), dataset, verifier))
                report(results[-1])
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
