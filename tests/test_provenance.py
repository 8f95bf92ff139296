"""Provenance that quotes: every paper source of every preset quotes the paper's text verbatim (looked up in our text
of the paper, ../shared/seeds beside the repository, where it is at hand), and the check refuses a made-up quote."""

import re
from pathlib import Path

import pytest

from rlntp.experiments import provenance, recipes
from rlntp.experiments.provenance import (
    CHOICE,
    PAPER,
    QUOTE_GAP,
    Source,
    as_rows,
    chose,
    normalised,
    says,
    table,
    unquoted,
    written_sources,
)

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def _main_checkout(root: Path) -> Path:
    """The repository's root, or for a git worktree (whose .git is a file "gitdir: MAIN/.git/worktrees/NAME") the
    root of the checkout it belongs to."""
    git = root / ".git"
    if git.is_file() and (line := git.read_text().strip()).startswith("gitdir:"):
        gitdir = Path(line.removeprefix("gitdir:").strip())
        if gitdir.parent.name == "worktrees":
            return gitdir.parent.parent.parent
    return root


SEEDS = _main_checkout(ROOT).parent / "shared" / "seeds"
"""Our text of the paper: beside the repository's root (../shared/seeds), where the project keeps it; absent in a
clone elsewhere (CI), where the quote test skips."""
FULL_TEXT = "Appendix B Experimental Details"
"""A heading only the full text of the paper has (the other seed files are summaries written about it)."""
CAPTION = re.compile(r"^\s*•\s*(Figure \d+: .+)$", re.M)
"""A figure caption as a listing page quotes it ("  • Figure 1: Left: ..."): the full text lost its captions."""


def paper_text(folder: Path) -> str | None:
    """Our text of the paper: its full text (the seed file with FULL_TEXT; its extraction dropped most mathematical
    symbols, "for =50, =0.25") and the figure captions a listing page quotes (CAPTION lines, LaTeX kept, "$d$=50");
    None where either is missing. Summaries written about the paper are not its text and are left out."""
    if not folder.is_dir():
        return None
    texts = [path.read_text(encoding="utf-8") for path in sorted(folder.glob("*.txt"))]
    full = [text for text in texts if FULL_TEXT in text]
    captions = [caption for text in texts for caption in CAPTION.findall(text)]
    return "\n".join(full + captions) if full and captions else None


def every_source() -> list[tuple[str, Source]]:
    """Every source written in a preset of a recipe (a value's, a section's, a preset's default) and every shared
    source of `experiments.provenance`, each with where it stands."""
    found = []
    for name, recipe in recipes().items():
        for preset_name, preset in recipe.presets.items():
            declared = written_sources(preset.values) | ({"(default)": preset.default} if preset.default else {})
            found += [(f"{name} --preset {preset_name}: {path}", source) for path, source in declared.items()]
    found += [(f"provenance.{name}", value) for name, value in vars(provenance).items() if isinstance(value, Source)]
    return found


def test_every_paper_source_quotes_and_every_choice_says_why():
    found = every_source()
    quoted = [(where, source) for where, source in found if source.kind == PAPER]
    assert len(quoted) >= 80, len(quoted)  # the walk reaches every preset (81 paper entries when this was written)
    assert [where for where, source in quoted if not source.quote.strip()] == []
    assert [where for where, source in found if source.kind == CHOICE and (source.quote or not source.note)] == []


def test_every_quote_is_in_the_papers_text():
    text = paper_text(SEEDS)
    if text is None:
        pytest.skip(f"our text of the paper (its full text and a page of its figure captions) is not in {SEEDS}: the "
                    "project keeps it beside the repository, a clone elsewhere has none")
    found = every_source()
    wrong = unquoted([source for _, source in found], text)
    missing = {where: source.quote for where, source in found if source in wrong}
    assert missing == {}


def test_a_made_up_or_altered_quote_fails_the_check():
    text = "We train for at most 100,000 iterations (of batch size 256) and we consider\n switching   to post-training."
    real = says("App. C.1", "We train for at most 100,000 iterations (of batch size 256)")
    spaced = says("App. C.1", "(of batch size 256) and we consider switching to\npost-training.")  # other whitespace
    joined = says("App. C.1", f"at most 100,000 iterations{QUOTE_GAP}switching to post-training")
    made_up = says("App. C.1", "we train for 50,000 iterations")
    altered = says("App. C.1", "We train for at most 200,000 iterations (of batch size 256)")
    half = says("App. C.1", f"at most 100,000 iterations{QUOTE_GAP}we use a batch of 512")
    unquoting = Source(PAPER, "App. C.1")  # written without `says`, which refuses it
    ours = chose("not stated")
    assert unquoted([real, spaced, joined, made_up, altered, half, unquoting, ours], text) == [
        made_up, altered, half, unquoting]
    with pytest.raises(ValueError, match="quotes nothing"):
        says("App. C.1", "  ")
    assert normalised(" a\n\tb  c ") == "a b c"
    if (full := paper_text(SEEDS)) is not None:  # against the paper's own text too
        assert unquoted([made_up, altered], full) == [made_up, altered] and unquoted([real], full) == []


def test_the_quote_is_shown_cut_on_one_line_and_kept_whole_in_rows():
    quote = "We consider a GPT2 architecture of depth 4, number of heads 32 and embedding dimension equal to 128."
    resolved = {"model/heads": (32, says("App. C.1", quote)), "train/lr": (1e-4, chose("lost in our text"))}
    rows = as_rows(resolved)
    assert rows[0]["quote"] == quote and "quote" not in rows[1]
    line = table(resolved).splitlines()[0]
    assert line.endswith('App. C.1 "We consider a GPT2 architecture of depth 4, number of heads…"')
    assert str(resolved["model/heads"][1]) == f'paper: App. C.1 "{quote}"'


def test_the_corrected_entries_say_what_the_text_states():
    def source(recipe: str, preset: str, path: str) -> Source:
        return recipes()[recipe].presets[preset].sources("test")[path][1]

    # stated, in Fig. 1's caption: the reward and the seeds (they were choices)
    assert "final token accuracy reward" in source("fig1", "paper", "posttrain/grpo/post/reward").quote
    assert "median across 3 seeds" in source("fig1", "paper", "pretrain/axes/train.seed").quote
    # not stated, inferred from other figures (they were the paper's)
    for recipe, preset, path in [("math", "paper", "eval/generations"), ("small-d", "paper", "pretrain/model/layers"),
                                 ("small-d", "paper", "pretrain/task/p_cot"), ("fig1", "paper", "pretrain/train/steps"),
                                 ("arch", "paper", "pretrain/task/d"), ("rare", "paper", "pretrain/task/d"),
                                 ("star-odds", "paper", "pretrain/task/d")]:
        assert source(recipe, preset, path).kind == CHOICE, (recipe, path)
    assert "{128, 256}" not in provenance.MODEL.note  # App. B.1's grid lost its values in our text
