"""Publish a reproduction's verdicts into the docs: `python scripts/publish_results.py [runs/all]` (`make results`);
`--reevaluate`: judge the published tables again with the criteria as they are now.

Copies each recipe's report.json and results table (theory: theory.json) from the reproduction into
docs/results/NAME/, fig1's figure to docs/figures/fig1_cpu.png, and rewrites docs/results.md and the
README's results table (the runs in the paper's regime only) from them with `rlntp.report.claims_markdown`, and the
verdicts block of each recipe's result section in docs/recipes.md (`recipe_blocks`). tests/test_docs.py checks that
the README, docs/results.md and those blocks hold exactly that text, that every verdict recomputes from its table
and that the prose of docs/recipes.md' results states no verdict outside the blocks: no verdict in the docs is
written by hand.
"""

import re
import shutil
import sys
from pathlib import Path

from rlntp.report import RESULT_FILES, claims_markdown, find_sections, kept_results
from rlntp.runs.dirs import read_recipe_marker

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "docs" / "results"
BEGIN = "<!-- claims: made by scripts/publish_results.py from docs/results; do not edit -->"
END = "<!-- claims end -->"
RECIPES_PAGE = ROOT / "docs" / "recipes.md"
RECIPE_BLOCK = re.compile(r"(<!-- verdicts ([\w-]+): made by scripts/publish_results.py; do not edit -->\n)(.*?)"
                          r"(<!-- verdicts end -->)", flags=re.S)
"""A recipe's verdicts block in docs/recipes.md: its begin marker (naming the recipe), its text, its end marker."""
COPIED = ("report.json", "registration.json", *RESULT_FILES, "examples.json")
"""What a published run keeps: its verdicts and registration, what they recompute from, and the LLM path's completion
examples (as Figs. 22-24)."""
PUBLISHED_PRESET = {"gsm8k": "small", "math": "small"}
"""The preset each recipe's published run comes from, where not `cpu`: GSM8K's and MATH's `small` (a real model on 2
cores)."""

RESULTS_PAGE = """# Results: the paper's claims, judged from our runs

Every claim of the paper that a recipe tests, its criterion, the verdict computed from the recipe's
results table and the numbers it used. Made by `scripts/publish_results.py` from the reproduction's
`report.json` files kept in [docs/results](results/) beside their tables; a test recomputes every
verdict from those tables. Measured with the `cpu` presets (small analogues of the paper's settings)
on this project's 2-core machines (GSM8K and MATH: their `small` presets, a real 135 M Llama on real
records); a row marked `quick` is a recipe's earlier `cpu` run, whose settings became its `quick`
preset (the memorisation regime) when its `cpu` preset moved into the paper's regime, shown until that
is run. What each recipe ran and how long it took is in its report.json and in [recipes and
results](recipes.md).

"""


def publish(source: Path) -> None:
    """Copy the recipes under `source` into docs/results and rewrite docs/results.md and the README's table.

    Only finished `cpu` reproductions are published (gsm8k's and math's `small`, `PUBLISHED_PRESET`; the pages say
    so); a recipe published earlier and not under `source` stays.
    """
    for section in find_sections(source):
        record = read_recipe_marker(section)
        name = record["recipe"]
        if record.get("preset") != PUBLISHED_PRESET.get(name, "cpu") or not record.get("claims"):
            print(f"skipped {section}: preset {record.get('preset')}, {len(record.get('claims') or [])} claims "
                  "(only finished cpu reproductions are published; gsm8k's and math's small)")
            continue
        target = RESULTS / name
        if target.exists():
            shutil.rmtree(target)  # nothing of an earlier run of this recipe stays beside the new one
        target.mkdir(parents=True)
        for file in COPIED:
            if (section / file).exists():
                shutil.copyfile(section / file, target / file)
        if name == "fig1" and (section / "fig1.png").exists():
            shutil.copyfile(section / "fig1.png", ROOT / "docs" / "figures" / "fig1_cpu.png")
    write_pages()


def write_pages() -> None:
    """docs/results.md, the README's results table and the verdicts blocks of docs/recipes.md from docs/results."""
    (ROOT / "docs" / "results.md").write_text(RESULTS_PAGE + claims_markdown(RESULTS))
    readme = (ROOT / "README.md").read_text()
    head, rest = readme.split(BEGIN)
    _, tail = rest.split(END)
    table = claims_markdown(RESULTS, brief=True, regime_only=True)
    (ROOT / "README.md").write_text(f"{head}{BEGIN}\n{table}{END}{tail}")
    RECIPES_PAGE.write_text(recipe_blocks(RECIPES_PAGE.read_text(), RESULTS))


def recipe_verdicts(name: str, results: Path = RESULTS) -> str:
    """The text of recipe `name`'s verdicts block: its published claims and verdicts (`claims_markdown`, brief), or a
    line saying none is published."""
    if not (results / name / "report.json").exists():
        return f"No published verdicts: docs/results holds no `{name}` reproduction yet.\n"
    return (claims_markdown(results / name, brief=True)
            + "\nCriteria and evidence: [results](results.md); made from the published table, never by hand.\n")


def recipe_blocks(page: str, results: Path = RESULTS) -> str:
    """`page` (docs/recipes.md) with every verdicts block rewritten from `results`."""
    return RECIPE_BLOCK.sub(lambda m: m[1] + recipe_verdicts(m[2], results) + m[4], page)


def reevaluate() -> list[str]:
    """Judge every published recipe's claims again from its table with the criteria as they are now (after a change
    of a criterion or of the gate), rewrite their report.json and the pages; returns one line per verdict that moved,
    for docs/results/CHANGES.md."""
    import json

    from rlntp.experiments import recipes
    from rlntp.experiments.claims import evaluate
    from rlntp.registration import CONFIRMATION, EXPLORATION, report_kind, stale

    moved = []
    for path in sorted(RESULTS.glob("*/report.json")):
        record = json.loads(path.read_text())
        results = kept_results(path.parent)
        recipe = recipes()[record["recipe"]]
        claims = evaluate(recipe.claims, results)
        if report_kind(record) == CONFIRMATION and (why := stale(path.parent, recipe)) is not None:
            # judged again under criteria its runs were not registered under: no longer a confirmation
            record["registration"] = record["registration"] | {"kind": EXPLORATION, "demoted": why}
            moved.append(f"{record['recipe']}: confirmation -> exploration ({why})")
        for old, new in zip(record["claims"], claims, strict=True):
            if old["verdict"] != new["verdict"]:
                moved.append(f"{record['recipe']}: {old['claim']}: {old['verdict']} -> {new['verdict']} "
                             f"({new['evidence']})")
        path.write_text(json.dumps(record | {"claims": claims}, indent=2) + "\n")
    write_pages()
    return moved


if __name__ == "__main__":
    if sys.argv[1:] == ["--reevaluate"]:
        print("\n".join(reevaluate()) or "no verdict moved")
    elif sys.argv[1:2] and sys.argv[1].startswith("-"):
        sys.exit(__doc__)
    else:
        publish(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/all"))
