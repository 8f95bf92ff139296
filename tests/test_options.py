"""Every option of every command, walked from the command signatures and config dataclasses, with bad values.

Each value is refused with exit status 2, one `error: ...` line, and nothing written to disk, or (for
values that can be valid, 0 and large sizes) accepted: then the command is stopped where its work
would begin, and still nothing may have been written.
"""

import dataclasses
import importlib
import inspect
import typing
from pathlib import Path, PurePath

import pytest

from rlntp import cli
from rlntp.cli import stages

pytestmark = pytest.mark.unit

ALWAYS_BAD = "always bad"
MAYBE_VALID = "0 or large: refused or accepted"


class Accepted(Exception):
    """Raised where a command's work would begin: validation let the value through."""


def _commands():
    groups = {(): stages.COMMANDS} | {(name,): importlib.import_module(f"rlntp.cli.{name}").commands()
                                      for name in cli.GROUPS}
    for prefix, commands in groups.items():
        for name, fn in commands.items():
            yield (*prefix, name), fn


def _options(fn):
    """(flag, type) of every option of a command: its plain parameters and the fields of its config dataclasses."""
    hints = typing.get_type_hints(fn, include_extras=True)
    for name, param in inspect.signature(fn).parameters.items():
        hint = hints[name]
        extras = typing.get_args(hint)[1:] if typing.get_origin(hint) is typing.Annotated else ()
        base = typing.get_args(hint)[0] if extras else hint
        if dataclasses.is_dataclass(base):
            field_hints = typing.get_type_hints(base)
            for f in dataclasses.fields(base):
                yield "--" + f.name.replace("_", "-"), field_hints[f.name]
            continue
        if "Positional" in repr(hint) or "PositionalRequired" in repr(hint):
            continue  # the run directory of eval and plot: covered by the base command lines
        renamed = [e.name for e in extras if type(e).__name__ == "_ArgConfig" and e.name]
        yield "--" + (renamed[0] if renamed else name.replace("_", "-")), base


def _bad_values(hint):
    """(value, class) pairs for an option of type `hint`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, __import__("types").UnionType):
        hint = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple:
        hint = args[0]
    if hint is bool:
        return [("abc", ALWAYS_BAD)]
    if hint is int:
        return [("nan", ALWAYS_BAD), ("-1", ALWAYS_BAD), ("1.5", ALWAYS_BAD), ("abc", ALWAYS_BAD), ("", ALWAYS_BAD),
                (str(2**63), ALWAYS_BAD), ("0", MAYBE_VALID), (str(10**15), MAYBE_VALID)]
    if hint is float:
        return [("nan", ALWAYS_BAD), ("inf", ALWAYS_BAD), ("-inf", ALWAYS_BAD), ("-1", ALWAYS_BAD), ("abc", ALWAYS_BAD),
                ("", ALWAYS_BAD), ("0", MAYBE_VALID), ("1e300", MAYBE_VALID)]
    if hint is str or (isinstance(hint, type) and issubclass(hint, PurePath)):
        return [("", ALWAYS_BAD)]
    raise AssertionError(f"no bad values for type {hint}")


@pytest.fixture(scope="module")
def source_run(tmp_path_factory):
    """A tiny finished pre-training run for posttrain --from, eval and plot."""
    out = tmp_path_factory.mktemp("source") / "run"
    cli.main(["pretrain", "--d", "6", "--layers", "1", "--width", "16", "--heads", "2", "--steps", "2",
              "--batch-size", "8", "--eval-every", "2", "--save-every", "2", "--eval-samples", "8", "--device", "cpu",
              "--quiet", "--out", str(out)])
    return out


def _base_argv(command, source_run, scratch):
    """The smallest valid command line of each command (the walked option is appended to it)."""
    out = ["--out", str(scratch / "out")]
    return {
        ("sample",): ["--n", "2"],
        ("pretrain",): ["--d", "6", "--layers", "1", "--width", "16", "--heads", "2", "--device", "cpu", *out],
        ("posttrain",): ["--from", str(source_run), "--device", "cpu", *out],
        ("eval",): [str(source_run), "--samples", "8", "--device", "cpu"],
        ("plot",): [str(source_run), "--out", str(scratch / "plot.png")],
        ("report",): [str(scratch.parent), "--out", str(scratch / "report.html")],
        ("data", "mult"): ["--digits", "2", "--train", "20", "--valid", "5", "--test", "5", *out],
        ("data", "sample"): ["--d", "4", "--train", "20", "--valid", "5", "--test", "5", *out],
        ("data", "parity"): ["--d", "4", "--copies", "2", *out],
        ("theory", "pretrain"): ["--steps", "2", "--eval-samples", "10"],
        ("theory", "star"): ["--steps", "2", "--rounds", "1", "--eval-samples", "10"],
        ("theory", "figure"): ["--steps", "2", "--rounds", "1", "--eval-samples", "10", *out],
        ("sweep",): [str(scratch.parent / "sweep.toml"), "--device", "cpu", *out],
        ("llm", "data"): out,
        ("llm", "sft"): ["--model", "m", "--data", "d", *out],
        ("llm", "grpo"): ["--model", "m", "--data", "d", *out],
        ("llm", "eval"): ["--model", "m", "--data", "d", "--out", str(scratch / "eval.json")],
    }.get(command, out if command[0] == "reproduce" else None)


def _tree(path: Path) -> dict[str, int]:
    return {str(p.relative_to(path)): p.stat().st_size for p in sorted(path.rglob("*"))}


@pytest.mark.integration
def test_every_option_of_every_command_refuses_bad_values(source_run, tmp_path, monkeypatch, capsys):
    from rlntp import data, evaluation, plots, report
    from rlntp.llm import common as llm_common
    from rlntp.llm import dataset as llm_data
    from rlntp.runs import dirs
    from rlntp.theory import experiments
    from rlntp.training import posttrain, pretrain

    def accept(*args, **kwargs):
        raise Accepted
    for module, name in ((pretrain, "open_run_dir"), (posttrain, "open_run_dir"), (llm_common, "open_run_dir"),
                         (dirs, "open_recipe_dir"), (dirs, "open_sweep_dir"),
                         (data, "write_dataset"), (report, "write_report"),
                         (evaluation, "evaluate"), (plots, "plot_run"), (experiments, "pretrain"),
                         (experiments, "star"), (llm_common, "check_causal_lm"), (llm_data, "load_records")):
        monkeypatch.setattr(module, name, accept)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (tmp_path / "sweep.toml").write_text("[pretrain]\ntask = { d = 4 }\n")
    monkeypatch.chdir(scratch)
    source_files = _tree(source_run)
    counts = {ALWAYS_BAD: 0, MAYBE_VALID: 0, "refused": 0, "accepted": 0}
    accepted = []
    for command, fn in _commands():
        base = _base_argv(command, source_run, scratch)
        assert base is not None, f"no base command line for {command}"
        options = list(_options(fn))
        assert options, command
        for flag, hint in options:
            for value, kind in _bad_values(hint):
                argv = [*command, *base, flag, value]
                counts[kind] += 1
                outcome = None
                try:
                    cli.main(argv)
                    outcome = "accepted"  # a command that only prints (sample)
                except Accepted:
                    outcome = "accepted"
                except SystemExit as e:
                    outcome = "refused"
                    assert e.code == 2, (argv, e.code)
                counts[outcome] += 1
                if outcome == "accepted":
                    accepted.append(f"{' '.join(command)} {flag} {value}")
                captured = capsys.readouterr()
                if outcome == "refused":
                    err = captured.err.strip()
                    assert err.startswith("error: ") and len(err.splitlines()) == 1, (argv, err)
                else:
                    assert kind == MAYBE_VALID, f"{argv} was accepted"
                assert _tree(scratch) == {}, (argv, _tree(scratch))
                assert _tree(source_run) == source_files, argv
    print(f"\n{sum(counts[k] for k in (ALWAYS_BAD, MAYBE_VALID))} cases: {counts}; accepted: " + ", ".join(accepted))
    assert counts[ALWAYS_BAD] > 400
