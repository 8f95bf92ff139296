"""The command line: bad input stops before any work with one clear line and a non-zero exit."""

import subprocess
import sys

import pytest

from rlntp.cli import main

pytestmark = pytest.mark.unit

TINY_RUN = ["--d", "6", "--layers", "1", "--width", "32", "--heads", "2", "--steps", "6", "--batch-size", "32",
            "--eval-every", "3", "--save-every", "3", "--eval-samples", "64", "--device", "cpu", "--quiet"]


def _fails_with(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code != 0
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err, err


@pytest.mark.parametrize("argv, message", [
    (["sample", "--d", "1"], "d must be an integer >= 2, got 1"),
    (["sample", "--p-cot", "1.5"], "p_cot must be in [0, 1], got 1.5"),
    (["sample", "--p-cot", "-0.2"], "p_cot must be in [0, 1], got -0.2"),
    (["sample", "--p-cot", "0.6", "--p-medium", "0.6"], "p_cot + p_medium must be at most 1"),
    (["sample", "--task", "sorting"], "unknown task 'sorting'; choose one of: parity, mult, FILE.py:CLASS"),
    (["pretrain", "--width", "100", "--heads", "3", "--out", "X"], "width must be a positive multiple of heads"),
    (["pretrain", "--arch", "llama", "--out", "X"], "unknown arch 'llama'; choose one of: gpt2, mistral"),
    (["pretrain", "--lr", "0", "--out", "X"], "lr must be > 0"),
    (["pretrain", "--steps", "0", "--out", "X"], "steps must be >= 1"),
    (["pretrain", "--precision", "fp16", "--out", "X"], "unknown precision 'fp16'; choose one of: fp32, bf16"),
])
def test_invalid_values_fail_before_any_work(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    _fails_with(capsys, argv, message)
    assert not (tmp_path / "X").exists()  # nothing was written


def test_eval_and_plot_of_a_directory_that_is_not_a_run(tmp_path, capsys):
    _fails_with(capsys, ["eval", str(tmp_path)], "is not a run directory")
    _fails_with(capsys, ["plot", str(tmp_path)], "is not a run directory")


def test_eval_of_a_missing_step_and_of_a_corrupt_checkpoint(tmp_path, capsys):
    out = tmp_path / "run"
    main(["pretrain", *TINY_RUN, "--out", str(out)])
    capsys.readouterr()
    _fails_with(capsys, ["eval", str(out), "--step", "4"], "no checkpoint at step 4; available: 3, 6")
    weights = out / "checkpoints" / "step_0000006" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    _fails_with(capsys, ["eval", str(out)], "step_0000006 is damaged: model.safetensors differs from the checksum")


def test_pretrain_eval_plot_round_trip(tmp_path, capsys):
    out = tmp_path / "run"
    main(["pretrain", *TINY_RUN, "--out", str(out)])
    main(["eval", str(out), "--step", "3", "--samples", "50"])
    text = capsys.readouterr().out
    assert "greedy   accuracy" in text and "sampled  accuracy" in text and "length histogram" in text
    main(["plot", str(out)])
    assert (out / "plot.png").stat().st_size > 10_000


@pytest.mark.integration
def test_console_script_exit_status_and_message(tmp_path):
    result = subprocess.run([sys.executable, "-m", "rlntp.cli", "sample", "--d", "1"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip() == "error: d must be an integer >= 2, got 1"
    assert result.stdout == ""


@pytest.mark.parametrize("argv, message", [
    (["sample", "--no-such-option", "1"], "Unrecognized options: --no-such-option, 1 (see rlntp --help)"),
    (["pretrain", "--d", "6"], "Missing from rlntp pretrain: --out PATH (see rlntp pretrain --help)"),
    (["sample", "--d", "abc"], "--d: invalid literal for int() with base 10: 'abc'"),
    (["sample", "--d"], "'--d'"),
    (["llm", "sft", "--model", "m"], "--out PATH --data PATH (see rlntp llm sft --help)"),
    (["reproduce", "nope"], "unknown command 'nope'; choose one of: fig1, "),
    (["theory"], "missing a command; choose one of: pretrain, star, figure"),
])
def test_parse_errors_of_tyro_are_one_line(capsys, argv, message):
    """What tyro rejects (it prints a box and exits 2; it has no public error hook) reaches the user as one line."""
    _fails_with(capsys, argv, message)


def test_a_parse_error_box_in_colour_or_plain_is_one_line():
    from rlntp.cli.parsing import one_line

    box = ("\x1b[1m\x1b[31m╭─ Value error ──────────────────────────────╮\x1b[0m\n"
           "│ Error parsing --steps: invalid literal for │\n"
           "│ int() with base 10: 'x'                    │\n"
           "│ ────────────────────────────────────────── │\n"
           "│ Argument helptext:                         │\n"
           "│     --steps INT                            │\n"
           "│ ────────────────────────────────────────── │\n"
           "│ For full helptext, see rlntp --help        │\n"
           "╰────────────────────────────────────────────╯\n")
    assert one_line(box) == "Error parsing --steps: invalid literal for int() with base 10: 'x' (see rlntp --help)"
    plain = (" Required options                          \n"
             " ----------------------------------------- \n"
             "  Missing from rlntp pretrain:             \n"
             "      --out PATH                           \n"
             "          the run directory (required)     \n"
             "  -----------------------------------------\n"
             "  For full helptext, run:                  \n"
             "      rlntp pretrain --help                \n")  # no box: stdout is not a UTF-8 terminal
    assert one_line(plain) == "Missing from rlntp pretrain: --out PATH (see rlntp pretrain --help)"
    assert one_line("") == "invalid command line (see --help)"
