"""Registration: a recipe's claims, criteria, thresholds and preset, fixed before the runs that judge them.

A recipe's (`experiments.recipe.Recipe`) registration at a preset is one record: each claim with its criterion in
words and a digest of its check's code, every threshold its checks read (the constants of the modules they are
written in, and of the shared rules: `SHARED_RULES`), the preset's settings and, from scope 2 on (`SCOPE`), the code
the checks reach (`reached_code`) and every job's whole configuration, defaults included (`job_configs`). Its hash
is written into the recipe's report.json with the seeds the runs used and its scope; the record itself into
registration.json beside it, so that a stale registration can say what changed.

Verdicts are published from confirmation runs only: runs whose seeds all start at `CONFIRMATION_SEED` or above,
seeds no one looked at while the presets, checkpoints and thresholds were chosen (those were chosen on exploration
seeds, below it). A confirmation verdict stands while the registration it was computed under is the current one;
a changed claim, criterion, threshold or preset (from scope 2 on also a helper the checks reach or a default a job
takes) makes it stale (`stale`) until the recipe is run again.
"""

import dataclasses
import functools
import hashlib
import importlib
import inspect
import json
import numbers
import types
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
SCOPE = 2
"""What a registration made now covers. 1 (the registrations before this stop's): the claims, their criteria, each
check's own source, the thresholds of the checks' modules and of `SHARED_RULES`, and the preset's declared settings.
2: also the source of every function and class the checks reach and the constants they read there
(`reached_code`), and each job's whole configuration with the defaults it takes (`job_configs`). A report.json
records the scope it was registered at and is checked against the current code at that scope (`stale`): a scope-1
confirmation does not cover a helper's code or a default, and says so on the report page."""


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


def _text_digest(text: str) -> str:
    """12 hex digits of the SHA-256 of `text`: every digest a registration holds."""
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def check_code(check) -> str:
    """A digest of a check's source (what `inspect.getsource` finds: the function, or the line of a lambda), so
    that a change to what a check computes changes the registration even where its words and constants stay."""
    function = getattr(check, "func", check)
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):  # no source at hand (a built-in, a check made at run time)
        source = f"{getattr(function, '__module__', '')}.{getattr(function, '__qualname__', repr(function))}"
    return _text_digest(source)


def reached_code(recipe) -> dict[str, str]:
    """A digest of every function and class the recipe's checks reach, by 'module.qualname', and of every value
    they read that is data (numbers, strings, and dicts, lists, tuples and sets of them), by 'module.NAME'. Followed
    through the globals a function's code reads, the modules it imports or reads them from (their attributes it
    reads, module by module), its closure (a wrapper's check), its defaults, a partial's arguments, a decorator's
    `__wrapped__`, a method's function, a class's bases and members, an object's class; within this package and the
    checks' own modules. A function is digested by its code's tokens, defaults and all, without docstrings, comments
    or layout (`_normalised`): a helper's threshold or computation changed makes the registration change (scope 2);
    reworded prose does not. Not followed (known gaps of scope 2, whose digests stay as they are once runs were
    registered under them): module-level code that is not a function or class (which operators `exact.Exact`
    lifts, for example), and data a closure holds (a threshold a check was made with, not read from a module)."""
    covered = {getattr(getattr(c.check, "func", c.check), "__module__", "") for c in recipe.claims}

    def ours(module: str | None) -> bool:
        return bool(module) and (module == "rlntp" or module.startswith("rlntp.") or module in covered)

    found: dict[str, str] = {}
    seen: dict[int, Any] = {}  # by id, each kept alive so that no id is reused while this runs
    pending: list[Any] = [claim.check for claim in recipe.claims]

    def read(owner: str, name: str, value: Any, attributes: list[str], modules: frozenset = frozenset()) -> None:
        """What a function reads as `owner.name`: a module (followed through the attributes it reads), code to
        visit, or data to digest."""
        if isinstance(value, types.ModuleType):
            if ours(value.__name__) and id(value) not in modules:
                for attribute in attributes:
                    if hasattr(value, attribute):
                        read(value.__name__, attribute, getattr(value, attribute), attributes, modules | {id(value)})
        elif callable(value) or isinstance(value, (staticmethod, classmethod, property, functools.partial)):
            pending.append(value)
        elif (data := _canonical(value)) is not None:
            found[f"{owner}.{name}"] = _text_digest(json.dumps(data))
        elif ours(type(value).__module__):
            pending.append(type(value))

    while pending:
        value = pending.pop(0)
        if id(value) in seen:
            continue
        seen[id(value)] = value
        if isinstance(value, functools.partial):
            pending += [value.func, *value.args, *value.keywords.values()]
        elif inspect.ismethod(value) or isinstance(value, (staticmethod, classmethod)):
            pending.append(value.__func__)
        elif isinstance(value, property):
            pending += [value.fget, value.fset, value.fdel]
        elif not (inspect.isfunction(value) or inspect.isclass(value)):
            wrapped = getattr(value, "__wrapped__", None) if callable(value) else None  # functools.cache's
            pending.append(wrapped if wrapped is not None else type(value))
        elif ours(value.__module__) and not (inspect.isfunction(value)
                                             and value.__code__.co_filename.startswith("<")):
            # (a function made at run time from the package's code, a dataclass's __init__: covered by its class)
            name, made = f"{value.__module__}.{value.__qualname__}", _code_digest(value)
            while found.get(name, made) != made:  # two lambdas of one scope: told apart by the order reached
                name += "'"
            found[name] = made
            if hasattr(value, "__wrapped__"):
                pending.append(value.__wrapped__)
            if inspect.isclass(value):
                pending += [*value.__mro__[1:], *vars(value).values()]
                continue
            pending += [cell.cell_contents for cell in value.__closure__ or () if _filled(cell)]
            pending += [*(value.__defaults__ or ()), *(value.__kwdefaults__ or {}).values()]
            names, attributes, imported = _reads(value.__code__)
            for name in names:
                if name in value.__globals__:
                    read(value.__module__, name, value.__globals__[name], attributes)
            for module_name, names_from in imported:
                if ours(module_name):
                    module = importlib.import_module(module_name)
                    read(module_name, "", module, attributes)
                    for name in names_from:
                        if hasattr(module, name):
                            read(module_name, name, getattr(module, name), attributes)
    return dict(sorted(found.items()))


def _reads(code: types.CodeType) -> tuple[list[str], list[str], list[tuple[str, list[str]]]]:
    """The global names a function's code reads, the attribute names it reads, and the modules it imports with the
    names it takes from each; its nested functions' and comprehensions' included, in order of first appearance."""
    import dis

    names: list[str] = []
    attributes: list[str] = []
    imported: list[tuple[str, list[str]]] = []
    for instruction in dis.get_instructions(code):
        if instruction.opname in ("LOAD_GLOBAL", "LOAD_NAME"):
            names.append(instruction.argval)
        elif instruction.opname in ("LOAD_ATTR", "LOAD_METHOD"):
            attributes.append(instruction.argval)
        elif instruction.opname == "IMPORT_NAME":
            imported.append((instruction.argval, []))
        elif instruction.opname == "IMPORT_FROM" and imported:
            imported[-1][1].append(instruction.argval)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            more = _reads(const)
            names, attributes, imported = names + more[0], attributes + more[1], imported + more[2]
    return list(dict.fromkeys(names)), list(dict.fromkeys(attributes)), imported


def _code_digest(value: Any) -> str:
    """A function's or class's digest: its code's tokens (`_normalised`) and, for a function, its defaults."""
    try:
        text = _normalised(inspect.getsource(value))
    except (OSError, TypeError):  # no source at hand
        text = f"{value.__module__}.{value.__qualname__}"
    defaults = [*(getattr(value, "__defaults__", None) or ()), *(getattr(value, "__kwdefaults__", None) or {}).items()]
    return _text_digest(text + json.dumps(_canonical(defaults)))


def _normalised(source: str) -> str:
    """Source code as its tokens, without docstrings, comments and layout (indentation kept as a marker), so that
    rewording prose or rewrapping lines leaves a digest as it was. The raw text where it does not tokenize (a
    lambda's lines cut out of a larger statement)."""
    import ast
    import io
    import textwrap
    import tokenize

    text = textwrap.dedent(source)
    try:
        docs = {line for node in ast.walk(ast.parse(text))
                if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body
                and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
                and isinstance(node.body[0].value.value, str)
                for line in range(node.body[0].lineno, node.body[0].end_lineno + 1)}
    except SyntaxError:
        docs = set()
    layout = (tokenize.INDENT, tokenize.DEDENT, tokenize.NEWLINE)
    try:
        return " ".join(f"<{tokenize.tok_name[token.type]}>" if token.type in layout else token.string
                        for token in tokenize.generate_tokens(io.StringIO(text).readline)
                        if token.type not in (tokenize.COMMENT, tokenize.NL) and token.start[0] not in docs)
    except (tokenize.TokenError, SyntaxError):
        return text


def _canonical(value: Any) -> Any:
    """`value` as JSON data with a fixed order (sets sorted, dict keys as strings), or None where it is not data
    (an object, an array): what a digest of data may rest on whatever the process's hash seed."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, numbers.Number):
        return str(value)  # a Fraction, a numpy scalar
    if isinstance(value, (list, tuple)):
        items = [_canonical(item) for item in value]
        return None if any(item is None and raw is not None for item, raw in zip(items, value)) else items
    if isinstance(value, (set, frozenset)):
        items = [_canonical(item) for item in value]
        return None if any(item is None for item in items) else sorted(items, key=json.dumps)
    if isinstance(value, dict):
        items = {str(key): _canonical(item) for key, item in value.items()}
        lost = any(items[str(key)] is None and item is not None for key, item in value.items())
        return None if lost else dict(sorted(items.items()))
    return None


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:  # a cell not yet assigned
        return False
    return True


def job_configs(recipe, preset: str) -> dict[str, str]:
    """A digest of each job's whole configuration (`sweeps.spec.Job`: the stage's config dataclasses with every
    default they take), by job name, as the recipe would run the preset into a fixed directory (a sweep's on the
    CPU): a changed default changes the registration (scope 2), and so does a field added to a config class. An own
    plan that needs inputs from the command line (the LLM recipes' --source) is expanded with placeholders for
    them."""
    from rlntp.errors import ConfigError
    from rlntp.sweeps.spec import expand

    settings, out, own = recipe.presets[preset].settings, Path("/registered"), recipe.own_plan
    if own is None:
        jobs = expand(settings, "cpu", where=f"the {recipe.name} recipe's {preset} preset", base=out)
    else:
        try:
            jobs = own.jobs(settings, out)
        except ConfigError:
            if own.inputs is None or own.with_inputs is None:
                raise
            fields = {f.name for f in dataclasses.fields(own.inputs)} & {"source", "test_source"}
            placeholders = own.inputs(**{name: f"<--{name.replace('_', '-')}>" for name in fields})
            jobs = own.jobs(own.with_inputs(settings, placeholders), out)
    return {job.name: _text_digest(json.dumps(jsonable(job))) for job in jobs}


def record(recipe, preset: str, scope: int = SCOPE) -> dict[str, Any]:
    """The registration of `recipe` at `preset`: its claims and criteria, the thresholds of its checks (`thresholds`)
    and the preset's settings as declared (what the command line gives a recipe's own plan, such as the LLM records,
    is recorded in its report.json, not registered); from scope 2 on (`SCOPE`), the code its checks reach
    (`reached_code`) and its jobs' whole configurations (`job_configs`)."""
    found = {"recipe": recipe.name, "preset": preset,
             "claims": [{"claim": c.claim, "criterion": c.criterion, "about_generalization": c.about_generalization,
                         "check": check_code(c.check)} for c in recipe.claims],
             "thresholds": thresholds(recipe), "settings": jsonable(recipe.presets[preset].settings)}
    if scope >= 2:
        found |= {"scope": scope, "code": reached_code(recipe), "jobs": job_configs(recipe, preset)}
    return found


def digest(registered: dict[str, Any]) -> str:
    """The hash of a registration record (12 hex digits of its SHA-256 over canonical JSON)."""
    return _text_digest(json.dumps(registered, sort_keys=True))


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


def registration(recipe, preset: str, scope: int = SCOPE) -> tuple[dict[str, Any], dict[str, Any]]:
    """What report.json records of the registration a run is made under ({"hash", "seeds", "kind", "scope"}; scope
    1 without "scope", as those reports were written), and the record (registration.json)."""
    registered = record(recipe, preset, scope)
    used = seeds(registered["settings"])
    made = {"hash": digest(registered), "seeds": used, "kind": kind(used)}
    return (made | {"scope": scope} if scope >= 2 else made), registered


def scope(report: dict[str, Any]) -> int:
    """The scope (`SCOPE`) a report.json's registration was made at: 1 where it does not say (made before scopes)."""
    return int((report.get("registration") or {}).get("scope", 1))


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
    current = record(recipe, report["preset"], scope(report))
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
    """(part, what) for each claim, threshold, setting, reached code (scope 2) or job configuration (scope 2, counted)
    that differs between two registration records."""
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
    old, new = before.get("code", {}), now.get("code", {})
    found += [("code", key) for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    old, new = before.get("jobs", {}), now.get("jobs", {})
    jobs = [key for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
    if jobs:
        named = ", ".join(jobs[:3]) + (", ..." if len(jobs) > 3 else "")
        found.append(("configuration of", f"{len(jobs)} job(s) ({named})"))
    return found


def _flat(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        return {k: v for key, item in value.items() for k, v in _flat(item, f"{prefix}{key}/").items()}
    return {prefix.rstrip("/"): value}
