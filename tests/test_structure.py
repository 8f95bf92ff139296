"""The package's shape: no import cycles, layers that import only downwards, every command in `rlntp --help`,
a recipe that is one module, and one claim-and-lock mechanism for every stage's directory."""

import ast
import dataclasses
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import rlntp
from rlntp.cli import main

pytestmark = pytest.mark.unit

SOURCE = Path(rlntp.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(SOURCE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the rlntp modules it imports anywhere in its code (at the top or inside functions)."""
    modules = {_module_name(path): path for path in SOURCE.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name}
        graph[name] = edges
    return graph


def test_no_module_imports_itself_back():
    graph = import_graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module)


@pytest.mark.parametrize("layer, forbidden", [
    ("rlntp.tasks", ("rlntp.data", "rlntp.models", "rlntp.training", "rlntp.runs", "rlntp.sweeps", "rlntp.experiments",
                     "rlntp.cli", "rlntp.llm")),
    ("rlntp.models", ("rlntp.data", "rlntp.training", "rlntp.runs", "rlntp.sweeps", "rlntp.experiments", "rlntp.cli")),
    ("rlntp.runs", ("rlntp.training", "rlntp.sweeps", "rlntp.experiments", "rlntp.cli")),
    ("rlntp.training", ("rlntp.sweeps", "rlntp.experiments", "rlntp.cli")),
    ("rlntp.theory", ("rlntp.models", "rlntp.training", "rlntp.runs", "rlntp.experiments", "rlntp.cli")),
    ("rlntp.llm", ("rlntp.training", "rlntp.sweeps", "rlntp.experiments", "rlntp.cli")),
    ("rlntp.experiments", ("rlntp.cli",)),
])
def test_layers_import_only_downwards(layer, forbidden):
    graph = import_graph()
    wrong = sorted(f"{module} -> {target}" for module, targets in graph.items()
                   if module == layer or module.startswith(layer + ".")
                   for target in targets if target.startswith(forbidden))
    assert not wrong, wrong


def test_the_theory_commands_load_neither_torch_nor_transformers():
    code = ("import sys; from rlntp.cli import main; main(['theory', 'pretrain', '--d', '4', '--steps', '2', "
            "'--eval-samples', '10', '--json']); print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_command_with_one_line(capsys):
    main(["--help"])
    text = capsys.readouterr().out
    listed = {line.split()[0]: line for line in text.splitlines() if line.startswith("  ")}
    for name in ("sample", "pretrain", "posttrain", "eval", "plot", "sweep", "report", "reproduce", "data", "llm",
                 "theory"):
        assert name in listed, text
        assert len(listed[name].split(maxsplit=1)[1]) > 20, listed[name]
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown command 'nonsense'") and len(err.splitlines()) == 1


TOY_RECIPE = '''
"""A toy recipe: one tiny pre-training run of parity, its final greedy accuracy as the summary."""

from pathlib import Path

from rlntp.experiments.claims import Claim, k_of_n
from rlntp.experiments.provenance import chose
from rlntp.experiments.recipe import Preset, Recipe
from rlntp.files import figure, save_figure


def report(table, spec, out: Path) -> str:
    fig, ax = figure()
    ax.plot(table["step"], table["eval/greedy_acc"])
    save_figure(fig, out / "toy.png")
    return f"toy: final greedy accuracy {table['eval/greedy_acc'].iloc[-1]:.3f}"


def _learns(table):
    final = table.sort_values("step").groupby("train.seed")["eval/greedy_acc"].last()
    return k_of_n({f"seed {seed}": (acc >= 0.95, f"{acc:.3f}") for seed, acc in final.items()})


RECIPE = Recipe(
    "toy", "A toy recipe for the tests",
    {"tiny": Preset("d = 4, 10 steps", {
        "pretrain": {"task": {"d": 4}, "model": {"layers": 1, "width": 16, "heads": 2},
                     "train": {"steps": 10, "batch_size": 16, "eval_every": 5, "eval_samples": 16, "save_every": 10}}},
        default=chose("a toy: the smallest run that exercises the recipe engine"))},
    [Claim("toy claim: parity d = 4 is learned in 10 steps", "final greedy accuracy >= 0.95", _learns)],
    report=report,
)
'''


@pytest.fixture
def toy_recipe(tmp_path, monkeypatch):
    """A recipe module written into a package of its own, and its line in `experiments.RECIPES` (which the CLI,
    `reproduce all` and the report read when they run)."""
    import importlib

    import rlntp.experiments as experiments

    package = tmp_path / "extra_recipes"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "toy_recipe.py").write_text(textwrap.dedent(TOY_RECIPE))
    monkeypatch.syspath_prepend(str(tmp_path))
    toy = importlib.import_module("extra_recipes.toy_recipe")
    monkeypatch.setattr(experiments, "RECIPES", (*experiments.RECIPES, toy.RECIPE))
    yield toy.RECIPE
    for name in ("extra_recipes.toy_recipe", "extra_recipes"):
        sys.modules.pop(name, None)


def test_a_new_recipe_is_one_module(toy_recipe, tmp_path, monkeypatch, capsys):
    import rlntp.experiments as experiments
    from rlntp.experiments import recipes

    assert recipes()["toy"] is toy_recipe
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--help"])
    assert exit_info.value.code == 0 and "A toy recipe for the tests" in capsys.readouterr().out
    # `reproduce all` runs only the toy, so the test stays short
    monkeypatch.setattr(experiments, "RECIPES", tuple(dataclasses.replace(recipe, in_all=recipe.name == "toy")
                                                      for recipe in experiments.RECIPES))
    out = tmp_path / "all"
    main(["reproduce", "all", "--preset", "tiny", "--out", str(out), "--device", "cpu", "--quiet"])
    assert "toy: final greedy accuracy" in (out / "toy" / "summary.txt").read_text()
    record = json.loads((out / "toy" / "report.json").read_text())
    assert record["recipe"] == "toy" and "paper" not in record
    # the registration it ran under: its preset names no seed (its run takes the default, 0), so its verdicts are
    # exploration; the record beside the report names the claim
    assert record["registration"]["kind"] == "exploration" and record["registration"]["seeds"] == []
    registered = json.loads((out / "toy" / "registration.json").read_text())
    assert registered["claims"][0]["criterion"] == "final greedy accuracy >= 0.95"
    assert record["provenance"][0] == {"setting": "pretrain/task/d", "value": 4, "provenance": "choice",
                                       "note": "a toy: the smallest run that exercises the recipe engine"}
    claim = record["claims"][0]
    assert claim["claim"].startswith("toy claim") and claim["verdict"] in ("reproduced", "not reproduced")
    assert claim["evidence"].startswith("1 of 1 seeds: seed 0 ") or claim["evidence"].startswith("0 of 1 seeds")
    page = (out / "report.html").read_text()
    assert 'id="toy"' in page and "A toy recipe for the tests" in page and 'src="toy/toy.png"' in page
    assert '<td><a href="#toy">toy</a></td><td>toy claim' in page


def test_two_llm_stages_on_one_directory_are_refused_like_two_runs(tiny_model, tmp_path, capsys):
    from rlntp.llm.dataset import LLMDataConfig, make_dataset
    from rlntp.llm.tiny import gsm8k_records
    from rlntp.runs.dirs import DirLock

    records = tmp_path / "train.jsonl"
    records.write_text("".join(json.dumps(r) + "\n" for r in gsm8k_records(16)))
    make_dataset(LLMDataConfig(source=str(records), p_cot=0.5), tmp_path / "data")
    out = tmp_path / "sft"
    out.mkdir()
    argv = ["llm", "sft", "--model", str(tiny_model), "--data", str(tmp_path / "data"), "--epochs", "1",
            "--per-device-batch", "8", "--cpu", "--quiet", "--out", str(out)]
    lock = DirLock(out).acquire()  # another process writing this directory
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
    finally:
        lock.release()
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1 and "in use by another rlntp process" in err, err
    main(argv)
    assert json.loads((out / "config.json").read_text())["stage"] == "sft"
    with pytest.raises(SystemExit):  # a GRPO run into the SFT run's directory
        main(["llm", "grpo", "--model", str(tiny_model), "--data", str(tmp_path / "data"), "--cpu", "--steps", "1",
              "--group-size", "2", "--completions-per-device", "2", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert "holds a sft run, not a grpo run" in err and len(err.splitlines()) == 1, err
