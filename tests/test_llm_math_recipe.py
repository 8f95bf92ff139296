"""The MATH recipe end to end on the tiny preset (a random tiny Llama) on mixtures made beforehand by `rlntp llm data`
from real MATH records (samples shipped in tests/data/real): the wiring, not the science. A module of its own, so
that under xdist it runs beside test_llm_recipe's GSM8K run rather than after it on the same worker."""

import json
import subprocess
import sys

import pytest

from test_llm_recipe import REAL, reproduce

pytestmark = pytest.mark.integration

XDIST_COST = 18
"""Its cost for the order in which xdist hands out modules (tests/conftest.py): the tiny recipe (the mixtures, two
SFT runs, GRPO, 12 evaluations: 1-2 minutes on one core), which the tier count (1) would put last."""


@pytest.mark.parametrize("dataset, train, test, p_cots", [("math", "math500_train.jsonl", "math500_test.jsonl",
                                                            (0.25, 1.0))])
def test_tiny_math_on_mixtures_made_by_llm_data(tmp_path, dataset, train, test, p_cots):
    """`--data DIR`: mixtures made beforehand by `rlntp llm data` from real MATH records, one per p_cot."""
    for p_cot in p_cots:
        made = subprocess.run([sys.executable, "-m", "rlntp.cli", "llm", "data", "--dataset", dataset, "--source",
                               str(REAL / train), "--test-source", str(REAL / test), "--p-cot", str(p_cot), "--out",
                               str(tmp_path / "mixtures" / f"p={p_cot:g}")], capture_output=True, text=True)
        assert made.returncode == 0, made.stderr[-2000:]
    out = tmp_path / "run"
    result = reproduce(dataset, "--preset", "tiny", "--data", str(tmp_path / "mixtures"), "--device", "cpu", "--out",
                       str(out), "--quiet")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert {r["p_cot"] for r in rows} == set(p_cots) and not (out / "data").exists()
    metrics = json.loads((out / "eval" / "sft,p=1,epoch=4.json").read_text())
    assert metrics["questions"] == 16 and metrics["responses"] == 32
    assert (out / "examples.json").exists() and (out / "completions.png").exists()
