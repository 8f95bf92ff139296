"""The README and docs/ as a user reads them: every `rlntp` command line they show parses into its command with valid
options (the cheap ones run), and every relative link and image points at something that exists."""

import re
import shlex
from pathlib import Path

import pytest

from rlntp.cli import main
from rlntp.cli.parsing import PARSE_ONLY

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RUN_FOR_REAL = ("sample", "--help")
"""Command lines that cost nothing run as they are; the others are parsed and their configs validated."""


def _blocks(text: str):
    """The lines of every ```bash block, continuation lines joined."""
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        yield from block.replace("\\\n", " ").splitlines()


def command_lines() -> list[tuple[str, str, list[str]]]:
    """(page, line, argv after `rlntp`) of every rlntp command in a bash block of the README or docs/."""
    found = []
    for page in PAGES:
        for line in _blocks(page.read_text()):
            tokens = shlex.split(line, comments=True)
            while tokens and tokens[-1] == "&":
                tokens.pop()
            for i, token in enumerate(tokens):
                if token.endswith("rlntp") and "/" not in token.replace(".venv/bin/", ""):
                    found.append((page.name, line.strip(), tokens[i + 1:]))
                    break
                if token == "rlntp.cli" and i and tokens[i - 1] == "-m":
                    found.append((page.name, line.strip(), tokens[i + 1:]))
                    break
    return found


COMMANDS = command_lines()


def test_the_docs_show_commands():
    pages = {page for page, _, _ in COMMANDS}
    assert {"README.md", "commands.md", "sweeps.md", "llm.md", "theory.md"} <= pages, pages
    assert len(COMMANDS) >= 40


@pytest.mark.parametrize("page, line, argv", COMMANDS, ids=[f"{p}: {' '.join(a)[:60]}" for p, _, a in COMMANDS])
def test_every_documented_command_line_parses(page, line, argv, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    real = bool(argv) and (argv[0] in RUN_FOR_REAL or argv[-1] in RUN_FOR_REAL)
    token = None if real else PARSE_ONLY.set(True)
    try:
        main(argv)
    except SystemExit as e:
        err = capsys.readouterr().err
        assert e.code == 0, f"{page}: {line}\n{err}"
    finally:
        if token is not None:
            PARSE_ONLY.reset(token)
    if argv[:1] == ["reproduce"] and len(argv) > 1 and argv[1] != "all" and "--preset" in argv:
        from rlntp.experiments import recipes

        preset = argv[argv.index("--preset") + 1]
        assert preset in recipes()[argv[1]].presets, f"{page}: {line}: no preset {preset!r}"
    if argv[:1] == ["sweep"] and (ROOT / argv[1]).exists():
        from rlntp.sweeps.spec import expand, load_sweep

        expand(load_sweep(ROOT / argv[1]), "cpu", where=argv[1], base=(ROOT / argv[1]).parent)


def _slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_and_image_exists():
    broken = []
    for page in [*PAGES, *sorted((ROOT / "docs" / "notes").glob("*.md"))]:  # the notes too: their figures and anchors
        text = page.read_text()
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):  # http(s), mailto
                continue
            path, _, anchor = target.partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.name}: {target}")
            elif anchor and file.suffix == ".md":
                headings = {_slug(h) for h in re.findall(r"(?m)^#+ (.+)$", file.read_text())}
                if anchor not in headings:
                    broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
    assert len(PAGES) >= 9


PLACEHOLDER_FILES = {"FILE.py", "x.py", "path/to/file.py"}
"""File names the pages use as placeholders in examples, not as files of the repository."""


def test_every_source_file_the_docs_name_exists():
    """A module, script, config or page named in the README or docs/ (`fig1.py`, `rlntp/cli/parsing.py`,
    `configs/accelerate/zero3.yaml`, `docs/gpu.md`) exists: a path relative to the repository, the page, `src/` or
    `src/rlntp/`; a bare name somewhere in the repository. A renamed or removed file fails here until the docs
    follow, and so does a file outside the repository (`../shared/STYLE.md`)."""
    names = {path.name for folder in ("src", "tests", "benchmarks", "scripts", "examples", "configs", "docs")
             for path in (ROOT / folder).rglob("*")} | {path.name for path in ROOT.iterdir()}
    missing = []
    for page in PAGES:
        for name in re.findall(r"(?<![\w/.-])([\w./-]+\.(?:py|sh|toml|yaml|ipynb|md))\b", page.read_text()):
            if name in PLACEHOLDER_FILES or name.startswith("/"):
                continue
            if "/" in name:
                found = any(p.exists() for p in (ROOT / name, page.parent / name, ROOT / "src" / name,
                                                 ROOT / "src" / "rlntp" / name))
            else:
                found = name in names
            if not found:
                missing.append(f"{page.name}: {name}")
    assert not missing, missing


def test_no_verdict_in_the_docs_is_written_by_hand():
    """The README's results table and docs/results.md are exactly `claims_markdown` of docs/results, and every
    verdict there recomputes, with its evidence, from the recipe's results table kept beside it."""
    import json

    from rlntp.experiments import recipes
    from rlntp.experiments.claims import evaluate
    from rlntp.report import claims_markdown, kept_results

    results = ROOT / "docs" / "results"
    readme = (ROOT / "README.md").read_text()
    begin = "<!-- claims: made by scripts/publish_results.py from docs/results; do not edit -->\n"
    assert readme.count(begin) == 1 and readme.count("<!-- claims end -->") == 1
    brief = claims_markdown(results, brief=True, regime_only=True)
    assert readme.split(begin)[1].split("<!-- claims end -->")[0] == brief
    assert (ROOT / "docs" / "results.md").read_text().endswith("\n\n" + claims_markdown(results))
    for record_path in sorted(results.glob("*/report.json")):
        record = json.loads(record_path.read_text())
        module = recipes()[record["recipe"]]
        results_of_run = kept_results(record_path.parent)
        assert results_of_run is not None, f"{record_path.parent} keeps no results to recompute its verdicts from"
        assert evaluate(module.claims, results_of_run) == record["claims"], record["recipe"]
        # not evaluated only where a gate says why (the memorisation regime, an LLM at floor) or where a growth
        # claim's bounds decide no step (`claims.grows`: every value a lower bound): never a check that could not run
        assert all(claim["verdict"] != "not evaluated"
                   or claim["evidence"].startswith(("memorisation regime: ", "accuracy at floor: ",
                                                    "no step in d is decided by the bounds: "))
                   for claim in record["claims"]), record["recipe"]


def test_the_api_page_lists_every_public_name_with_its_signature():
    import inspect
    import subprocess
    import sys

    import rlntp

    page = (ROOT / "docs" / "api.md").read_text()
    import importlib.util

    for name in rlntp.__all__:  # a public name that is also a submodule would be hidden once the module is imported
        assert importlib.util.find_spec(f"rlntp.{name}") is None, name
    for name in rlntp.__all__:
        obj = getattr(rlntp, name)
        if inspect.isfunction(obj):
            shown = ", ".join(p.name if p.default is inspect.Parameter.empty else f"{p.name}={p.default!r}"
                              for p in inspect.signature(obj).parameters.values())
            assert f"`{name}({shown})`".replace("'", '"') in page, name
        else:
            assert f"`{name}`" in page, name
    code = "import sys, rlntp; print(sorted(m for m in ('torch', 'transformers', 'pandas') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"


VERDICT_WORDS = re.compile(r"\b(reproduc\w*|partly|not evaluated|wiring only)\b", flags=re.I)
"""The words of a verdict (and of the recipes' claims about one): the result prose of docs/recipes.md may not use
them outside the generated blocks, so it cannot state a verdict that differs from the published one."""


def _publisher():
    import importlib.util

    spec = importlib.util.spec_from_file_location("publish_results", ROOT / "scripts" / "publish_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def result_prose_problems(page: str, results: Path) -> list[str]:
    """What is wrong with the results of docs/recipes.md (`page`) against the verdicts published in `results`: a
    verdicts block that differs from what `scripts/publish_results.py` writes, a published recipe without its block,
    a recipe with two, and every verdict word in the result prose outside the blocks, code and code spans."""
    publisher = _publisher()
    problems = []
    blocks = publisher.RECIPE_BLOCK.findall(page)
    names = [name for _, name, _, _ in blocks]
    problems += [f"two verdicts blocks for {name}" for name in sorted({n for n in names if names.count(n) > 1})]
    problems += [f"no verdicts block for published recipe {path.parent.name}"
                 for path in sorted(results.glob("*/report.json")) if path.parent.name not in names]
    problems += [f"verdicts block of {name} differs from docs/results/{name} (run scripts/publish_results.py)"
                 for _, name, text, _ in blocks if text != publisher.recipe_verdicts(name, results)]
    assert page.count("\n## Results") == 1, "docs/recipes.md has one '## Results' section"
    prose = page.split("\n## Results", 1)[1].split("\n## ", 1)[0]
    prose = publisher.RECIPE_BLOCK.sub("", prose)
    prose = re.sub(r"```.*?```", "", prose, flags=re.S)
    prose = re.sub(r"`[^`]*`", "", prose)  # a code span may wrap a line: `rlntp reproduce ...`
    for line in prose.splitlines():
        problems += [f"verdict word {m[0]!r} in the result prose: {line.strip()}" for m in VERDICT_WORDS.finditer(line)]
    return problems


def test_the_result_prose_states_no_verdict_and_its_blocks_are_the_published_ones():
    """Each result subsection of docs/recipes.md carries its recipe's published verdicts as a block written by
    `scripts/publish_results.py` from docs/results/NAME/report.json; the hand-written prose around the blocks uses
    no verdict word, so no verdict on the page can differ from the published one."""
    page = (ROOT / "docs" / "recipes.md").read_text()
    results = ROOT / "docs" / "results"
    assert result_prose_problems(page, results) == []
    assert len(_publisher().RECIPE_BLOCK.findall(page)) >= len(list(results.glob("*/report.json")))


def test_the_result_prose_check_fails_on_a_hand_written_or_stale_verdict():
    page = (ROOT / "docs" / "recipes.md").read_text()
    results = ROOT / "docs" / "results"
    # the prose states a verdict: the issue's own example
    said = page.replace("![Figure 12, CPU preset]", "Figure 12 is not reproduced.\n\n![Figure 12, CPU preset]")
    assert any("'reproduced'" in p and "Figure 12 is not" in p for p in result_prose_problems(said, results))
    assert any("'Partly'" in p for p in result_prose_problems(page.replace("(`make fig1`;", "Partly (`make fig1`;"),
                                                              results))
    # a block edited by hand (fig2's first 'reproduced' turned down) or missing
    edited = re.sub(r"(<!-- verdicts fig2:.*?\| )reproduced( \|)", r"\1not reproduced\2", page, count=1, flags=re.S)
    assert edited != page
    assert result_prose_problems(edited, results) == [
        "verdicts block of fig2 differs from docs/results/fig2 (run scripts/publish_results.py)"]
    dropped = _publisher().RECIPE_BLOCK.sub(lambda m: "" if m[2] == "fig1" else m[0], page)
    assert result_prose_problems(dropped, results) == ["no verdicts block for published recipe fig1"]
    # inside a block, code or a code span the words are allowed
    assert result_prose_problems(page.replace("(`make fig1`;", "(`rlntp reproduce fig1`;"), results) == []
