"""Presets with the provenance of every value, and plans that say what a run costs before it runs."""

import json
import os
from pathlib import Path

import pytest

from rlntp.cli import main
from rlntp.experiments import recipes
from rlntp.experiments import Preset
from rlntp.experiments.provenance import CHOICE, PAPER, choice, chose, paper, says, sources

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[1]


def test_every_value_of_every_preset_has_a_provenance():
    for name, recipe in recipes().items():
        for preset, declared in recipe.presets.items():
            resolved = declared.sources(f"{name} {preset}")  # raises on a value without one, or a stale entry
            assert resolved and {source.kind for _, source in resolved.values()} <= {PAPER, CHOICE}, (name, preset)
            assert all(source.note.strip() for _, source in resolved.values()), (name, preset)
        # the paper presets say so value by value: no blanket default for the whole preset
        if "paper" in recipe.presets:
            assert recipe.presets["paper"].default is None, name


def test_sources_refuse_a_value_without_provenance_and_an_entry_without_a_value():
    preset = {"pretrain": {"task": {"d": 50, "p_cot": 0.25}, "train": {"lr": 1e-4}}}
    declared = {"pretrain/task": says("§3", "a toy quote"), "pretrain/task/p_cot": chose("ours")}
    with pytest.raises(ValueError, match="pretrain/train/lr = 0.0001 has no provenance"):
        sources(preset, declared, "toy")
    resolved = sources(preset, declared | {"pretrain/train": chose("lost")}, "toy")
    assert resolved["pretrain/task/d"][1].kind == PAPER and resolved["pretrain/task/p_cot"][1].kind == CHOICE
    with pytest.raises(ValueError, match="names pretrain/model"):
        sources(preset, declared | {"pretrain/train": chose("lost"), "pretrain/model": chose("gone")}, "toy")


def test_a_value_written_beside_its_source_wins_over_its_section_and_the_default():
    section = says("App. B.1: the model", "the model")
    values = {"task": {"d": paper(50, "§3.1", "d = 50"), "p_cot": 0.25},
              "model": section({"layers": 4, "width": choice(256, "ours")}), "seeds": [0, 1]}
    preset = Preset("toy", values, default=chose("a toy"))
    assert preset.settings == {"task": {"d": 50, "p_cot": 0.25}, "model": {"layers": 4, "width": 256}, "seeds": [0, 1]}
    resolved = {path: str(source) for path, (_, source) in preset.sources("toy").items()}
    assert resolved == {"task/d": 'paper: §3.1 "d = 50"', "task/p_cot": "choice: a toy",
                        "model/layers": 'paper: App. B.1: the model "the model"', "model/width": "choice: ours",
                        "seeds": "choice: a toy"}
    with pytest.raises(ValueError, match="task/p_cot = 0.25 has no provenance"):
        Preset("toy", values).sources("toy")
    assert Preset("a test's", {"task": {"d": 4}}).sources("toy") == {}  # none named at all: a test's preset


def _files(root: Path) -> set[Path]:
    """Every path under `root` but Python's bytecode caches (an import may write them)."""
    return {path for path in root.rglob("*") if "__pycache__" not in path.parts}


@pytest.mark.integration
def test_every_paper_preset_plans_without_writing_and_marks_every_setting(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    before_repo, before_here = _files(ROOT / "src"), _files(tmp_path)
    plans = {}
    for name in recipes():
        main(["reproduce", name, "--preset", "paper", "--plan", "--json", "--device", "cpu"])
        plans[name] = json.loads(capsys.readouterr().out)
    assert _files(tmp_path) == before_here and _files(ROOT / "src") == before_repo
    for name, planned in plans.items():
        assert planned["recipe"] == name and planned["preset"] == "paper"
        assert planned["settings"] and all(s["provenance"] in (PAPER, CHOICE) for s in planned["settings"]), name
        assert planned["cost"]["estimate"], name
    fig2 = {kind["task"]["d"]: kind for kind in plans["fig2"]["kinds"]}
    assert set(fig2) == {25, 50} and fig2[50]["runs"] == 5 * 3  # the curves' 5 p_cot at d = 50, 3 seeds
    mult = plans["mult"]["kinds"]
    epochs = {kind["task"]["digits"]: kind["steps"] / kind["runs"] * 32 / 808_000
              for kind in mult if kind["stage"] == "pretrain"}
    assert epochs == pytest.approx({4: 15, 5: 50, 7: 50}, abs=1e-3)  # App. B.2
    grid = {row["setting"]: row for row in plans["fig13"]["settings"]}
    assert grid["pretrain/model/heads"]["provenance"] == PAPER  # App. C.1 states Fig. 13's model
    assert plans["fig1"]["cost"]["seconds"] > 0 and plans["fig1"]["totals"]["pretrain_samples"] == 3 * 50_000 * 256
    gsm8k, math = plans["gsm8k"], plans["math"]
    assert 0.05 in {p for row in gsm8k["settings"] if row["setting"] == "p_cots" for p in row["value"]}  # Fig. 5 right
    assert gsm8k["sft_checkpoints_at_epochs"] == list(range(1, 31)) and gsm8k["runs"]["sft"] == 5
    assert math["models"] == ["meta-llama/Llama-3.2-3B-Instruct", "meta-llama/Llama-3.1-8B-Instruct"]  # App. B.4
    assert math["runs"]["sft"] == 2 * 5 and math["sft_checkpoints_at_epochs"] == list(range(1, 21))


def test_llm_plans_take_the_command_lines_records(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["reproduce", "gsm8k", "--preset", "paper", "--plan", "--source", "train.jsonl", "--test-source",
          "test.jsonl", "--model", "llama3b"])
    text = capsys.readouterr().out
    assert "models: llama3b (SFT batch 32 per device)" in text and "data: train.jsonl (test: test.jsonl)" in text
    assert "source                       \"train.jsonl\"                choice  --source on the command line" in text
    assert not any(tmp_path.iterdir())


def test_a_plan_prints_counts_cost_and_provenance(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["reproduce", "fig1", "--preset", "cpu", "--plan", "--device", "cpu"])
    text = capsys.readouterr().out
    assert "runs: 3 pre-training, 21 post-training" in text and "CPU-hours here" in text  # 7 checkpoints x 3 seeds
    assert "pretrain/task/p_cot" in text and "paper   §3.1: Fig. 1 is at d = 50, p_cot = 0.25" in text
    assert '"Lines correspond to median across 3 seeds."' in text  # the caption's words beside the seeds
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main(["reproduce", "fig1", "--json"])
    assert "--json prints the plan" in capsys.readouterr().err


def test_a_sweep_file_plans_without_an_out_directory(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    main(["sweep", str(ROOT / "examples" / "sweep.toml"), "--plan", "--json", "--device", "cpu"])
    planned = json.loads(capsys.readouterr().out)
    assert planned["runs"]["pretrain"] >= 1 and planned["cost"]["seconds"] > 0
    assert not any(tmp_path.iterdir())
    with pytest.raises(SystemExit):
        main(["sweep", str(ROOT / "examples" / "sweep.toml")])
    assert "--out is required" in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("path", sorted((ROOT / "examples").rglob("*.toml")), ids=lambda p: p.name)
def test_every_example_sweep_file_is_valid(path):
    from rlntp.sweeps.spec import expand, load_sweep

    assert expand(load_sweep(path), "cpu", where=str(path), base=path.parent)
