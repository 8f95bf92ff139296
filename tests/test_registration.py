"""Registration: the claims, criteria, thresholds and preset a confirmation run is judged under, and that a change to
any of them makes its published verdicts stale until the recipe runs again."""

import dataclasses
import json

import pytest

from rlntp.errors import ConfigError
from rlntp.experiments.claims import Claim, Verdict
from rlntp.experiments.provenance import chose
from rlntp.experiments.recipe import Preset, Recipe
from rlntp.registration import (
    CONFIRMATION,
    CONFIRMATION_SEED,
    EXPLORATION,
    FILE,
    SCOPE,
    check_code,
    digest,
    reached_code,
    kind,
    record,
    registration,
    seeds,
    stale,
)

pytestmark = pytest.mark.unit

LEARNED = 0.9
"""a threshold of the toy's check, read from this module as a recipe module's are"""


def _learns(table) -> Verdict:
    return Verdict("reproduced", f"final accuracy >= {LEARNED}")


def _learns_otherwise(table) -> Verdict:
    return Verdict("not reproduced", f"final accuracy below {LEARNED}")


def _toy(seeds_: list[int], steps: int = 10, criterion: str = f"final greedy accuracy >= {LEARNED}") -> Recipe:
    return Recipe("toy", "a toy", {"cpu": Preset("toy", {"pretrain": {
        "task": {"d": 4}, "train": {"steps": steps}, "axes": {"train.seed": seeds_}}}, default=chose("a toy"))},
        [Claim("toy claim: parity d = 4 is learned", criterion, _learns)], report=lambda table, spec, out: "")


def _published(tmp_path, recipe: Recipe):
    """A recipe directory as a run writes it: report.json with its registration, registration.json beside it."""
    registered, registered_record = registration(recipe, "cpu")
    (tmp_path / "report.json").write_text(json.dumps({"recipe": recipe.name, "preset": "cpu",
                                                      "registration": registered, "claims": []}))
    (tmp_path / FILE).write_text(json.dumps(registered_record))
    return registered


def test_seeds_from_1000_are_confirmation_seeds_and_the_others_exploration():
    assert seeds(_toy([1000, 1001]).presets["cpu"].settings) == [1000, 1001]
    assert seeds({"seeds": [2, 0], "llm": {"seed": 1}}) == [0, 1, 2]
    assert kind([1000, 1001, 1002]) == CONFIRMATION
    assert kind([0, 1, 2]) == kind([999, 1000]) == kind([]) == EXPLORATION


def test_every_cpu_preset_runs_confirmation_seeds_and_every_quick_preset_exploration_seeds():
    """The cpu presets (`reproduce NAME --preset cpu`, whose verdicts are published) run fresh seeds from 1000 (or
    from 2000, 3000 ... once a registration changed after its confirmation run), as many as before (5 for rare and
    mult, 3 elsewhere); the quick presets keep the exploration seeds they were chosen with, and so do the paper
    presets."""
    from rlntp.experiments import recipes
    from rlntp.experiments.provenance import CHOICE, confirmation_seeds

    cpu = {name: seeds(recipe.presets["cpu"].settings) for name, recipe in recipes().items() if "cpu" in recipe.presets}
    assert {"fig1", "fig2", "fig3", "arch", "small-d", "fig13", "partial-cot", "star-odds", "rare", "mult",
            "theory"} <= set(cpu)
    for name, used in cpu.items():
        assert kind(used) == CONFIRMATION and used[0] % CONFIRMATION_SEED == 0, (name, used)
        assert used == list(range(used[0], used[0] + len(used))), (name, used)
    # a preset whose registration changed after its confirmation run cannot go back to the seeds that judged it
    assert cpu["fig1"][0] == cpu["fig3"][0] == 3000
    assert cpu["small-d"][0] == cpu["fig13"][0] == cpu["star-odds"][0] == cpu["theory"][0] == cpu["arch"][0] == 2000
    assert confirmation_seeds(3, "why", spent=range(1000, 1003)).value == [2000, 2001, 2002]
    assert confirmation_seeds(2, "why", spent=[1000, 2001]).value == [3000, 3001]
    with pytest.raises(ConfigError, match="spent confirmation seeds are 1000 or above"):
        confirmation_seeds(3, "why", spent=[2])
    assert {name: len(used) for name, used in cpu.items() if len(used) != 3} == {"rare": 5, "mult": 5}
    others = {f"{name}/{preset}": seeds(recipe.presets[preset].settings) for name, recipe in recipes().items()
              for preset in ("quick", "paper") if preset in recipe.presets}
    assert any(key.endswith("/quick") for key in others)
    assert all(kind(used) == EXPLORATION for used in others.values()), others
    assert all(used and max(used) < CONFIRMATION_SEED for key, used in others.items() if key.endswith("/quick"))

    made = confirmation_seeds(2, "two, for the test")
    assert made.value == [1000, 1001] and made.source.kind == CHOICE
    assert "confirmation seeds from 1000" in made.source.note and made.source.note.endswith("why 2: two, for the test")


def test_the_record_holds_each_claims_criterion_every_threshold_its_checks_read_and_the_settings():
    registered = record(_toy([1000]), "cpu")
    assert registered["claims"] == [{"claim": "toy claim: parity d = 4 is learned", "about_generalization": False,
                                     "criterion": "final greedy accuracy >= 0.9", "check": check_code(_learns)}]
    assert registered["thresholds"][f"{__name__}.LEARNED"] == LEARNED
    assert registered["thresholds"]["rlntp.experiments.claims.APPROX"] == 0.05  # the shared rules too
    assert registered["settings"]["pretrain"]["train"]["steps"] == 10


def test_a_confirmation_stands_until_a_threshold_a_criterion_or_the_preset_changes(tmp_path, monkeypatch):
    recipe = _toy([1000, 1001])
    assert _published(tmp_path, recipe)["kind"] == CONFIRMATION
    assert stale(tmp_path, recipe) is None
    # a threshold of the check's module
    monkeypatch.setattr(f"{__name__}.LEARNED", 0.8)
    why = stale(tmp_path, recipe)
    assert why is not None and f"threshold {__name__}.LEARNED: 0.9 -> 0.8" in why and "rlntp reproduce toy" in why
    monkeypatch.undo()
    # the criterion in words
    why = stale(tmp_path, dataclasses.replace(recipe, claims=[dataclasses.replace(recipe.claims[0],
                                                                                   criterion="accuracy > 0.5")]))
    assert why is not None and "claim 1 (toy claim" in why
    # what the check computes, its words and constants the same
    why = stale(tmp_path, dataclasses.replace(recipe, claims=[dataclasses.replace(recipe.claims[0],
                                                                                   check=_learns_otherwise)]))
    assert why is not None and "claim 1 (toy claim" in why
    # a setting of the preset
    why = stale(tmp_path, _toy([1000, 1001], steps=20))
    assert why is not None and "setting pretrain/train/steps: 10 -> 20" in why
    # a preset that no longer exists
    why = stale(tmp_path, dataclasses.replace(recipe, presets={"quick": recipe.presets["cpu"]}))
    assert why is not None and "no longer has" in why


def _bar(table) -> float:
    return LEARNED


def _learns_through_a_helper(table) -> Verdict:
    return Verdict("reproduced", f"final accuracy >= {_bar(table)}")


def _stage_default(monkeypatch, recipe: Recipe, name: str, value) -> None:
    """Change the default of one field of the pre-training stage's train config (a dataclass), as an edit of its
    class would."""
    import inspect
    from pathlib import Path

    from rlntp.experiments import _jobs

    job = _jobs(recipe, "cpu", recipe.presets["cpu"].settings, Path("/somewhere"), device="cpu")[0]
    init = type(job.pretrain.train).__init__
    defaults = [p for p in inspect.signature(init).parameters.values() if p.default is not inspect.Parameter.empty]
    monkeypatch.setattr(init, "__defaults__", tuple(value if p.name == name else p.default for p in defaults))


def test_scope_2_covers_the_code_a_check_reaches_and_every_default_its_jobs_take(tmp_path, monkeypatch):
    recipe = dataclasses.replace(_toy([1000]), claims=[Claim("toy claim", "accuracy >= 0.9", _learns_through_a_helper)])
    registered = _published(tmp_path, recipe)
    assert registered["scope"] == SCOPE == 2 and stale(tmp_path, recipe) is None
    assert f"{__name__}._bar" in record(recipe, "cpu")["code"]  # the helper, not only the check
    # a helper's computation, the check's own source the same
    monkeypatch.setattr(f"{__name__}._bar", lambda table: 0.5)
    why = stale(tmp_path, recipe)
    assert why is not None and f"code {__name__}._bar" in why
    monkeypatch.undo()
    # a default of a job's configuration that the preset does not set
    assert "lr" not in recipe.presets["cpu"].settings["pretrain"].get("train", {})
    _stage_default(monkeypatch, recipe, "lr", 0.5)
    why = stale(tmp_path, recipe)
    assert why is not None and "configuration of 1 job(s) (seed=1000/pretrain)" in why


TOY_CHECKS = '''
import functools

BAR = {"learned": 0.9}


@functools.cache
def bar():
    """DOC"""
    return BAR["learned"]  # COMMENT


def check(table):
    from rlntp.experiments.claims import Verdict

    return Verdict("reproduced", f"final accuracy >= {bar()}")
'''


def test_scope_2_digests_the_helpers_a_check_reaches_by_their_code_not_their_prose(tmp_path, monkeypatch):
    """A check in a module of its own reaching a cached helper, the helper's data and a lazily imported class: an
    edit of the helper's computation or of its data changes their digests; rewording its docstring or comment does
    not."""
    import importlib
    import linecache
    import sys

    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", True)

    def reached(text: str) -> dict[str, str]:
        (tmp_path / "toy_checks.py").write_text(text)
        sys.modules.pop("toy_checks", None)
        linecache.clearcache()
        importlib.invalidate_caches()
        module = importlib.import_module("toy_checks")
        return reached_code(dataclasses.replace(_toy([1000]), claims=[Claim("toy claim", "c", module.check)]))

    try:
        first = reached(TOY_CHECKS)
        assert {"toy_checks.check", "toy_checks.bar", "toy_checks.BAR",
                "rlntp.experiments.claims.Verdict"} <= set(first)
        assert reached(TOY_CHECKS.replace("DOC", "Reworded at length.").replace("COMMENT", "another")) == first
        computed = reached(TOY_CHECKS.replace('BAR["learned"]  #', 'BAR["learned"] - 0.1  #'))
        assert computed["toy_checks.bar"] != first["toy_checks.bar"]
        data = reached(TOY_CHECKS.replace('{"learned": 0.9}', '{"learned": 0.8}'))
        assert data["toy_checks.BAR"] != first["toy_checks.BAR"] and data["toy_checks.bar"] == first["toy_checks.bar"]
    finally:
        sys.modules.pop("toy_checks", None)


def test_a_scope_1_confirmation_is_checked_at_its_scope(tmp_path, monkeypatch):
    """A report registered before scope 2 (no "scope" in it) stands while what scope 1 covered is unchanged: a
    helper's change is the known gap it does not see; a threshold's it does."""
    recipe = dataclasses.replace(_toy([1000]), claims=[Claim("toy claim", "accuracy >= 0.9", _learns_through_a_helper)])
    registered = record(recipe, "cpu", scope=1)
    assert "code" not in registered and "jobs" not in registered
    (tmp_path / "report.json").write_text(json.dumps({"recipe": "toy", "preset": "cpu", "claims": [], "registration": {
        "hash": digest(registered), "seeds": [1000], "kind": CONFIRMATION}}))
    (tmp_path / FILE).write_text(json.dumps(registered))
    monkeypatch.setattr(f"{__name__}._bar", lambda table: 0.5)
    assert stale(tmp_path, recipe) is None
    monkeypatch.setattr(f"{__name__}.LEARNED", 0.8)
    assert "threshold" in stale(tmp_path, recipe)


def test_exploration_verdicts_are_never_vouched_for_by_a_registration(tmp_path):
    recipe = _toy([0, 1, 2])
    assert _published(tmp_path, recipe)["kind"] == EXPLORATION
    assert stale(tmp_path, _toy([0, 1, 2], steps=20)) is None  # nothing registered to go stale


def test_every_published_confirmation_verdict_was_computed_under_the_current_registration():
    """The docs' confirmation verdicts (docs/results/NAME/report.json with confirmation seeds) stand only while
    their recipe's registration is unchanged: change a criterion, a threshold or the preset, and this fails until
    the recipe is run again and published."""
    from pathlib import Path

    from rlntp.experiments import recipes

    published = sorted((Path(__file__).resolve().parent.parent / "docs" / "results").glob("*/report.json"))
    assert published
    found = [stale(path.parent, recipes()[json.loads(path.read_text())["recipe"]]) for path in published]
    assert not [why for why in found if why], found


def test_a_directory_resumed_under_another_registration_holds_exploration_verdicts(tmp_path, monkeypatch):
    """The registration a recipe's runs began under is kept in its directory: judged again under another (a changed
    threshold), its verdicts are exploration, and `began_under` says which one the runs were made under."""
    import rlntp.experiments as experiments
    from rlntp.experiments.recipe import OwnPlan

    own = OwnPlan(run=lambda settings, out, device, progress: ("", {}), plan=lambda settings: {}, jobs=lambda s, o: [])
    recipe = Recipe("toy", "a toy", {"cpu": Preset("toy", {"seeds": [1000, 1001]}, default=chose("a toy"))},
                    [Claim("toy claim", f"accuracy >= {LEARNED}", _learns)], own_plan=own)
    monkeypatch.setattr(experiments, "RECIPES", (*experiments.RECIPES, recipe))
    out = tmp_path / "toy"

    def registered() -> dict:
        experiments.reproduce("toy", "cpu", out, device="cpu", progress=False)
        return json.loads((out / "report.json").read_text())["registration"]

    first = registered()
    assert first["kind"] == CONFIRMATION and registered() == first  # a rerun under the same one: still confirmation
    # a directory whose runs began under scope 1 (before scope 2 existed) resumes under scope 1: still confirmation
    report = json.loads((out / "report.json").read_text())
    report["registration"] = registration(recipe, "cpu", scope=1)[0]
    (out / "report.json").write_text(json.dumps(report))
    assert registered() == report["registration"] and "scope" not in report["registration"]
    report["registration"] = first
    (out / "report.json").write_text(json.dumps(report))
    monkeypatch.setattr(f"{__name__}.LEARNED", 0.8)
    changed = registered()
    assert changed["kind"] == EXPLORATION and changed["began_under"] == first["hash"] != changed["hash"]
