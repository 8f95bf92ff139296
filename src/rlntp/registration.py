"""Registration: a recipe's claims, criteria, thresholds and preset, fixed before the runs that judge them.

A recipe's (`experiments.recipe.Recipe`) registration at a preset is one record: each claim with its criterion in
words and a digest of its check's code, every threshold its checks read (the constants of the modules they are
written in, and of the shared rules: `SHARED_RULES`), and the preset's settings. Its hash is written into the
recipe's report.json with the seeds the runs used; the record itself into registration.json beside it, so that a
stale registration can say what changed.

Verdicts are published from confirmation runs only: runs whose seeds all start at `CONFIRMATION_SEED` or above,
seeds no one looked at while the presets, checkpoints and thresholds were chosen (those were chosen on exploration
seeds, below it). A confirmation verdict stands while the registration it was computed under is the current one;
a changed claim, criterion, threshold or preset makes it stale (`stale`) until the recipe is run again.
"""

import dataclasses
import hashlib
import importlib
import inspect
import json
import numbers
from pathlib import Path
from typing import Any

CONFIRMATION_SEED = 1000
"""Confirmation seeds are this and above; exploration seeds (the ones results were looked at with while choosing
presets, checkpoints and thresholds) below it."""
CONFIRMATION, EXPLORATION = "confirmation", "exploration"
FILE = "registration.json"
SHARED_RULES = ("rlntp.experiments.claims", "rlntp.experiments.summary", "rlntp.regime", "rlntp.exact",
                "rlntp.theory.closed_forms")
"""Modules whose thresholds every recipe's checks may read."""


def jsonable(value: Any) -> Any:
    """`value` as JSON data: dataclasses as dictionaries, paths and fractions as strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    return json.loads(json.dumps(value, default=str))


def thresholds(recipe) -> dict[str, Any]:
    """Every constant (an UPPER_CASE module attribute: a number, a string, or a tuple or list of them) of the modules
    the recipe's checks are written in and of the shared rules, by 'module.NAME': the thresholds a verdict depends on
    besides its criterion's words and its check's code."""
    modules = set(SHARED_RULES)
    for claim in recipe.claims:
        check = getattr(claim.check, "func", claim.check)  # a functools.partial's function
        modules.add(getattr(check, "__module__", None) or inspect.getmodule(check).__name__)
    found = {}
    for name in sorted(modules):
        for attribute, value in sorted(vars(importlib.import_module(name)).items()):
            if attribute.isupper() and _constant(value):
                found[f"{name}.{attribute}"] = jsonable(value)
    return found


def _constant(value: Any) -> bool:
    if isinstance(value, (tuple, list)):
        return all(_constant(item) for item in value)
    return isinstance(value, (numbers.Number, str)) and not isinstance(value, bool)


def check_code(check) -> str:
    """A digest of a check's source (what `inspect.getsource` finds: the function, or the line of a lambda), so
    that a change to what a check computes changes the registration even where its words and constants stay."""
    function = getattr(check, "func", check)
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):  # no source at hand (a built-in, a check made at run time)
        source = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def record(recipe, preset: str) -> dict[str, Any]:
    """The registration of `recipe` at `preset`: its claims and criteria, the thresholds of its checks (`thresholds`)
    and the preset's settings as declared (what the command line gives a recipe's own plan, such as the LLM records,
    is recorded in its report.json, not registered)."""
    return {"recipe": recipe.name, "preset": preset,
            "claims": [{"claim": c.claim, "criterion": c.criterion, "about_generalization": c.about_generalization,
                        "check": check_code(c.check)} for c in recipe.claims],
            "thresholds": thresholds(recipe), "settings": jsonable(recipe.presets[preset].settings)}


def digest(registered: dict[str, Any]) -> str:
    """The hash of a registration record (12 hex digits of its SHA-256 over canonical JSON)."""
    return hashlib.sha256(json.dumps(registered, sort_keys=True).encode()).hexdigest()[:12]


def seeds(settings: Any) -> list[int]:
    """The seeds a preset's runs use: the values of every setting named seed, seeds or train.seed (an axis), sorted."""
    found: set[int] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif key in ("seed", "seeds", "train.seed"):
            found.update(int(s) for s in (value if isinstance(value, list) else [value]))

    walk(jsonable(settings))
    return sorted(found)


def kind(used: list[int]) -> str:
    """CONFIRMATION where every seed is a confirmation seed (`CONFIRMATION_SEED` and above), else EXPLORATION (also
    where the settings name no seed)."""
    return CONFIRMATION if used and min(used) >= CONFIRMATION_SEED else EXPLORATION


def registration(recipe, preset: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """What report.json records of the registration a run is made under ({"hash", "seeds", "kind"}), and the
    record (registration.json)."""
    registered = record(recipe, preset)
    used = seeds(registered["settings"])
    return {"hash": digest(registered), "seeds": used, "kind": kind(used)}, registered


def report_kind(report: dict[str, Any]) -> str:
    """Whether a report.json holds confirmation or exploration verdicts; one written before registrations existed is
    exploration (nothing was registered before its runs)."""
    return (report.get("registration") or {}).get("kind", EXPLORATION)


def stale(directory: Path, recipe) -> str | None:
    """Why the confirmation verdicts in `directory` (a recipe's report.json and registration.json) no longer stand,
    naming what changed since their registration; None where the registration is the current one or the verdicts
    are exploration (which no registration vouches for)."""
    report = json.loads((Path(directory) / "report.json").read_text())
    if report_kind(report) != CONFIRMATION:
        return None
    if report["preset"] not in recipe.presets:
        return (f"{recipe.name}: its confirmation verdicts were computed at preset {report['preset']!r}, which it no "
                f"longer has; rerun it at one of {', '.join(recipe.presets)} and publish that")
    current = record(recipe, report["preset"])
    now = digest(current)
    if now == report["registration"]["hash"]:
        return None
    kept = Path(directory) / FILE
    before = json.loads(kept.read_text()) if kept.exists() else {}
    changed = [f"{part} {key}" for part, key in _differences(before, current)] or ["(registration.json is missing)"]
    return (f"{recipe.name}: its confirmation verdicts were computed under registration "
            f"{report['registration']['hash']}, the current one is {now}; changed: {'; '.join(changed)}. "
            f"Log the change in docs/results/CHANGES.md, then run `rlntp reproduce {recipe.name} --preset "
            f"{report['preset']}` on confirmation seeds not looked at yet (the same seeds repeat the same floats: "
            "move the preset's to the next unused block) and publish it (`make results`); or republish these as "
            "exploration (`scripts/publish_results.py --reevaluate` does)")


def _differences(before: dict[str, Any], now: dict[str, Any]) -> list[tuple[str, str]]:
    """(part, what) for each claim, threshold or setting that differs between two registration records."""
    found = []
    old_claims, new_claims = before.get("claims", []), now["claims"]
    for i in range(max(len(old_claims), len(new_claims))):
        old = old_claims[i] if i < len(old_claims) else None
        new = new_claims[i] if i < len(new_claims) else None
        if old != new:
            found.append(("claim", f"{i + 1} ({(new or old)['claim'][:60]}...)"))
    for part in ("thresholds", "settings"):
        old, new = _flat(before.get(part, {})), _flat(now[part])
        found += [(part[:-1], f"{key}: {old.get(key)!r} -> {new.get(key)!r}")
                  for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    return found


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}/").items()}
    return {prefix.rstrip("/"): value}
