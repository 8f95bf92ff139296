"""examples/quickstart.ipynb executed as a user would run it, its outputs read back: the Python API end to end."""

import json
from pathlib import Path

import pytest

nbclient = pytest.importorskip("nbclient")
nbformat = pytest.importorskip("nbformat")

pytestmark = pytest.mark.science

NOTEBOOK = Path(__file__).parents[1] / "examples" / "quickstart.ipynb"


def _text(cell) -> str:
    """The printed text of a code cell: its standard output and the plain-text form of its results."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            parts.append(output["text"])
        elif "data" in output:
            parts.append(output["data"].get("text/plain", ""))
    return "".join(parts)


def test_the_quickstart_notebook_runs_and_shows_rl_after_ntp(tmp_path):
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=900, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not any(o.get("output_type") == "error" for o in cell.get("outputs", [])) for cell in code)
    samples = _text(code[0]).splitlines()
    assert len(samples) == 4 and all(line.endswith("EOS") for line in samples)
    assert "eval/greedy_acc" in _text(code[1]) and "eval/greedy_len_median" in _text(code[2])
    assert (tmp_path / "runs" / "quickstart" / "quickstart.png").stat().st_size > 10_000
    # all it writes is under runs/, which git ignores in examples/ (tests/test_llm_hostile.py): run in the checkout,
    # it leaves no untracked file
    assert [p.name for p in tmp_path.iterdir()] == ["runs"]
    summary = json.loads(_text(code[4]).strip().splitlines()[-1])
    # the paper's Fig. 1 at the notebook's size (seed 0, one thread: the same numbers on every machine): after
    # next-token prediction greedy decoding is at chance; GRPO from the same checkpoint answers long and right
    assert abs(summary["pretrain_greedy_acc"] - 0.5) < 0.1
    assert summary["grpo_greedy_acc"] > 0.9 and summary["grpo_greedy_len_median"] == summary["long_len"] == 12
    assert "4 runs, 12 rows" in _text(code[5]) and "task.p_cot" in _text(code[5])
    assert (tmp_path / "runs" / "quickstart" / "sweep" / "results.parquet").is_file()
