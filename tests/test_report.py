"""`rlntp report DIR`: one static page with a section per reproduction, and only links to files that exist."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from rlntp.cli import main  # noqa: E402
from rlntp.errors import ConfigError  # noqa: E402
from rlntp.report import claims_markdown, find_sections, write_report  # noqa: E402

pytestmark = pytest.mark.unit


def _png(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path)
    plt.close(fig)


def _section(path: Path, recipe: str, **extra) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / "report.json").write_text(json.dumps({"recipe": recipe, "title": f"{recipe} title", "preset": "cpu",
                                                  "command": f"rlntp reproduce {recipe}", "seconds": 75.0} | extra))
    (path / "summary.txt").write_text(f"{recipe} table\n")
    _png(path / f"{recipe}.png")


@pytest.fixture
def reproductions(tmp_path):
    root = tmp_path / "all"
    _section(root / "star-odds", "star-odds", order=20, claims=[
        {"claim": "odds double", "criterion": "within 0.08", "verdict": "partly", "evidence": "1 of 3 seeds"}])
    _section(root / "fig1", "fig1", order=1, claims=[
        {"claim": "NTP stays at 50%", "criterion": "final | 1/2 ± 3 sd", "verdict": "reproduced",
         "evidence": "3 of 3 seeds: 0.493 <script>"},
        {"claim": "GRPO learns", "criterion": "acc >= 0.95", "verdict": "not reproduced", "evidence": "0 of 3 seeds"}])
    nested = root / "mult"  # a recipe whose figures lie one level down, and no sweep.json: its settings shown
    nested.mkdir()
    (nested / "report.json").write_text(json.dumps({"recipe": "mult", "order": 30, "settings": {"digits": [3]}}))
    _png(nested / "n3" / "mult.png")
    (root / "fig1" / "runs" / "x").mkdir(parents=True)  # a run directory is never a section
    (root / "fig1" / "runs" / "x" / "report.json").write_text(json.dumps({"recipe": "inner"}))
    _png(root / "fig1" / "runs" / "x" / "plot.png")
    return root


def test_the_page_has_a_section_per_reproduction_in_the_paper_order_and_existing_images(reproductions):
    assert [p.name for p in find_sections(reproductions)] == ["fig1", "star-odds", "mult"]
    page = write_report(reproductions).read_text()
    ids = re.findall(r'<h2 id="([^"]+)"', page)
    assert ids == ["fig1", "star-odds", "mult"]
    sources = re.findall(r'<img[^>]* src="([^"]+)"', page)
    assert sorted(sources) == ["fig1/fig1.png", "mult/n3/mult.png", "star-odds/star-odds.png"]
    assert all((reproductions / s).exists() for s in sources)
    assert "<script>" not in page
    top, sections = page.split("<h2>Sections</h2>")
    # one table of every claim before the sections, each linked to its section, in the recipes' order
    assert re.findall(r'<td><a href="#([^"]+)">', top) == ["fig1", "fig1", "star-odds"]
    assert ('<td class="reproduced">reproduced</td><td>3 of 3 seeds: 0.493 &lt;script&gt;</td>' in top
            and '<td class="not-reproduced">not reproduced</td>' in top and '<td class="partly">partly</td>' in top)
    assert "3 claims: 1 reproduced, 1 partly, 1 not reproduced" in top
    assert sections.count('<table class="claims">') == 2 and "<td>final | 1/2 ± 3 sd</td>" in sections
    assert "1 min 15 s" in page and "rlntp reproduce fig1" in page and "&quot;digits&quot;" in page


def test_the_page_is_well_formed(reproductions):
    class Balance(HTMLParser):
        void = {"meta", "img", "br", "hr", "link"}

        def __init__(self):
            super().__init__()
            self.stack = []

        def handle_starttag(self, tag, attrs):
            if tag not in self.void:
                self.stack.append(tag)

        def handle_endtag(self, tag):
            assert self.stack and self.stack.pop() == tag, tag

    parser = Balance()
    parser.feed(write_report(reproductions, reproductions / "elsewhere" / "page.html").read_text())
    assert parser.stack == []


def test_images_are_relative_to_the_page_wherever_it_is_written(reproductions):
    page = write_report(reproductions, reproductions / "elsewhere" / "page.html")
    for source in re.findall(r'<img[^>]* src="([^"]+)"', page.read_text()):
        assert (page.parent / unquote(source)).resolve().exists()


def test_repeated_recipes_get_their_own_anchors_and_a_broken_file_becomes_a_note(tmp_path):
    _section(tmp_path / "cpu" / "fig1", "fig1", order=1, seconds="?",
             claims=[{"claim": "acc", "criterion": 0.5, "verdict": "maybe", "evidence": None}, "not a claim"])
    _section(tmp_path / "paper" / "fig1", "fig1", order=1, claims="not a list")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("{half written")
    page = write_report(tmp_path).read_text()
    assert re.findall(r'<h2 id="([^"]+)"', page) == ["fig1", "fig1-2", "broken"]
    assert "<td>acc</td><td>0.5</td><td>maybe</td><td></td>" in page and "wall time not recorded" in page
    assert re.findall(r'<td><a href="#([^"]+)">', page) == ["fig1"]  # the one claim, in the top table
    assert "report.json could not be read" in page


def test_a_directory_without_reproductions_is_one_line(tmp_path, capsys):
    for path in (tmp_path / "missing", tmp_path):
        with pytest.raises(SystemExit) as exit_info:
            main(["report", str(path)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_the_claims_as_markdown_are_deterministic_in_the_recipes_order(reproductions, tmp_path):
    text = claims_markdown(reproductions)
    lines = text.splitlines()
    assert lines[:2] == ["| recipe | the paper | criterion | verdict | evidence |", "|---|---|---|---|---|"]
    # each recipe says what its verdicts rest on: these reports, written before registrations, are exploration
    assert lines[2] == "| fig1 (cpu, exploration) | NTP stays at 50% | final \\| 1/2 ± 3 sd | reproduced | 3 of 3 seeds: 0.493 &lt;script> |"
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| fig1 (cpu, exploration)", "| fig1 (cpu, exploration)",
                                                         "| star-odds (cpu, exploration)"]
    assert claims_markdown(reproductions) == text and text.endswith("\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no reproduction"):
        claims_markdown(tmp_path / "empty")


def test_each_section_shows_its_settings_with_their_provenance(tmp_path):
    _section(tmp_path / "fig1", "fig1", order=1, provenance=[
        {"setting": "pretrain/task/d", "value": 50, "provenance": "paper", "note": "§3.1-3.2: d = 50"},
        {"setting": "pretrain/train/lr", "value": 1e-4, "provenance": "choice", "note": "lost <in> our text"},
        {"setting": "pretrain/task/p_cot", "value": 0.25, "provenance": "paper", "note": "§3.1",
         "quote": "in Figure 1 for =50, =0.25 <and>"}])  # a row of a report.json written with the quotes
    page = write_report(tmp_path).read_text()
    assert "settings: 2 the paper's, 1 our choices" in page
    assert '<td>§3.1 <q>in Figure 1 for =50, =0.25 &lt;and&gt;</q></td>' in page
    assert '<td class="choice">choice</td><td>lost &lt;in&gt; our text</td>' in page
    assert '<td class="paper">paper</td><td>§3.1-3.2: d = 50</td>' in page


def test_a_sections_example_responses_are_shown_beside_the_papers_statements(tmp_path):
    _section(tmp_path / "gsm8k", "gsm8k", order=40)
    items = [{"label": f"{when} GRPO (step {step})", "paper": f"Fig. {fig}: says <this>", "step": step,
              "question": 3, "answer": "18", "response": f"<think>step {step}</think> <answer>18</answer>",
              "length": 9, "correct": step > 0, "reward": 130.0}
             for when, step, fig in (("before", 0, 22), ("during", 2, 23), ("after", 4, 24))]
    (tmp_path / "gsm8k" / "examples.json").write_text(json.dumps({"heading": "tiny: completions", "note": "wiring",
                                                                  "measure": "Fig. 25: different", "items": items}))
    (tmp_path / "gsm8k" / "examples-other.json").write_text("{not json")  # unreadable: left out, not fatal
    page = write_report(tmp_path).read_text()
    assert "<h3>tiny: completions</h3>" in page and "gold answer <code>18</code>" in page
    assert page.count('<pre class="response">') == 3 and "&lt;think&gt;step 4&lt;/think&gt;" in page
    assert "Fig. 23: says &lt;this&gt;" in page and "9 tokens, right, reward 130.0" in page


def test_a_scope_1_registration_says_what_it_does_not_cover(tmp_path):
    _section(tmp_path / "fig1", "fig1", order=1, registration={"hash": "aaaaaaaaaaaa", "seeds": [1000],
                                                               "kind": "confirmation"})
    _section(tmp_path / "fig3", "fig3", order=3, registration={"hash": "bbbbbbbbbbbb", "seeds": [1000],
                                                               "kind": "confirmation", "scope": 2})
    page = write_report(tmp_path).read_text()
    assert "registration <code>aaaaaaaaaaaa</code> (scope 1: the checks' helper code and the jobs' defaults" in page
    assert "registration <code>bbbbbbbbbbbb</code> ·" in page
