"""The theory (paper §4, App. D): closed forms by hand, the linear model against the parity task's own
checks, and the simulation against Theorems 1 and 2 through the `rlntp theory` command line."""

import json
import math

import numpy as np
import pytest
import torch

from rlntp.cli import main as rlntp_main
from rlntp.tasks.parity import LONG, SHORT, ParityTask
from rlntp.theory import closed_forms as cf
from rlntp.theory.mixture import (
    MixtureConfig,
    Sequences,
    cot_reward,
    is_correct,
    sample_inputs,
    sample_mixture,
    to_tokens,
)
from rlntp.theory.model import LinearAR, parameter_mask
from rlntp.theory.sgd import SGDConfig, fit, loss_gradient

pytestmark = pytest.mark.unit

D = 20
STAR_TOLERANCE = 0.03
"""Measured long fraction vs the recursion, every round: 20,000 evaluation inputs give a sampling error
of at most 0.0035 (1 sd); the rest is the finite SGD's calibration error (chain-of-thought bits right
with probability ~0.995 at d = 20, the EOS probability within ~1%), which shrinks the odds by ~2% a
round and compounds. The largest deviation seen over 8 rounds at p_cot = 1/20 is 0.015."""
CALIBRATION_TOLERANCE = 0.03


def main(argv: list[str]) -> None:
    """`rlntp theory ARGV...`."""
    rlntp_main(["theory", *argv])


def _run(capsys, argv: list[str]) -> str:
    main(argv)
    return capsys.readouterr().out


# --- closed forms, by hand -------------------------------------------------------------------------

def test_star_recursion_by_hand():
    assert cf.star_step(0.25) == pytest.approx(0.4)  # 0.5 / 1.25
    assert cf.star_step(0.4) == pytest.approx(4 / 7)  # 0.8 / 1.4
    assert cf.star_step(0.1) == pytest.approx(2 / 11)
    assert cf.star_step(1 / 3) == pytest.approx(0.5)
    assert cf.star_long_frac(0.1, 2) == pytest.approx(4 / 13)  # 4 * 0.1 / (1 + 3 * 0.1)
    assert cf.star_long_frac(0.05, 4) == pytest.approx(0.8 / 1.75)  # 16 * 0.05 / (1 + 15 * 0.05)
    assert cf.star_long_frac(0.3, 0) == pytest.approx(0.3)
    for p in (0.01, 0.05, 0.1, 0.25, 0.6):
        q = p
        for t in range(1, 11):
            q_next = cf.star_step(q)
            assert cf.odds(q_next) == pytest.approx(2 * cf.odds(q))  # the odds double
            q = q_next
            assert cf.star_long_frac(p, t) == pytest.approx(q)  # closed form = iterated recursion


def test_rounds_until_greedy_goes_long_by_hand():
    # first t with p_t > 1/3, i.e. 2^t p / (1 - p) > 1/2
    assert cf.rounds_until_greedy_long(0.25) == 1  # p_1 = 0.4
    assert cf.rounds_until_greedy_long(0.1) == 3  # 0.182, 0.308, 0.471
    assert cf.rounds_until_greedy_long(0.05) == 4  # 0.095, 0.174, 0.296, 0.457
    assert cf.rounds_until_greedy_long(0.01) == 6  # odds 1/99: 2^6 / 99 = 0.646 > 1/2 > 2^5 / 99
    assert cf.rounds_until_greedy_long(0.2) == 2  # p_1 = 1/3 exactly is a tie, not above
    assert cf.rounds_until_greedy_long(1 / 3) == 1
    assert cf.rounds_until_greedy_long(0.4) == 0
    # O(log(1 / p)): one more round each time p halves
    assert [cf.rounds_until_greedy_long(0.1 / 2**k) for k in range(5)] == [3, 4, 5, 6, 7]


def test_calibration_and_greedy_rule_by_hand():
    assert cf.long_correct_prob(0.25) == 0.25
    assert cf.short_correct_prob(0.25) == 0.375
    assert cf.sampled_accuracy(0.25) == 0.625
    assert cf.continue_prob(0.25) == pytest.approx(0.4)
    assert cf.continue_prob(1 / 3) == pytest.approx(0.5)  # the critical weight: a tie after b_1
    assert cf.greedy_accuracy(0.25) == 0.5 and cf.greedy_accuracy(0.45) == 1.0
    assert cf.greedy_accuracy(1 / 3) == 0.5
    assert cf.greedy_long_frac(0.3) == 0.0 and cf.greedy_long_frac(0.34) == 1.0


# --- the linear model and its data -----------------------------------------------------------------

def test_mixture_and_reward_agree_with_the_parity_task():
    d, rng = 7, np.random.default_rng(0)
    task = ParityTask(d=d, p_cot=0.5)
    seqs = sample_mixture(500, MixtureConfig(d, 0.5), rng)
    x_tokens, out_tokens = map(torch.from_numpy, to_tokens(seqs))
    long = torch.from_numpy(seqs.long)[:, None]
    expected = torch.where(long, task.outputs(x_tokens, LONG), task.outputs(x_tokens, SHORT))
    assert torch.equal(out_tokens, expected)
    assert 0.4 < seqs.long.mean() < 0.6
    # a random model's samples are often wrong: the reward and the answer check must match the task's
    model = LinearAR(rng.normal(size=(d + 1, 2 * d + 1)).astype(np.float32) * parameter_mask(d))
    samples = model.generate(sample_inputs(2000, d, rng), rng)
    x_tokens, out_tokens = map(torch.from_numpy, to_tokens(samples))
    assert np.array_equal(cot_reward(samples), task.is_valid_cot(x_tokens, out_tokens).numpy())
    assert np.array_equal(is_correct(samples), task.is_correct(x_tokens, out_tokens).numpy())
    assert 0.05 < cot_reward(samples).mean() < 0.95


def test_gradient_of_each_position_by_hand():
    # d = 3; a long sequence x = + - -, b = + - +, and a short one x = - - +, b_3 = +; at w = 0 every
    # sigmoid is 1/2, so each position's gradient is -(1/2) mean(y phi) over the sequences it labels.
    x = np.array([[1, -1, -1], [-1, -1, 1]], dtype=np.float32)
    outputs = np.array([[1, -1, 1], [1, 0, 0]], dtype=np.float32)
    seqs = Sequences(x, outputs, np.array([True, False]))
    grad = loss_gradient(LinearAR.zeros(3), seqs) * parameter_mask(3)
    expected = np.array([
        # w_x                w_zx               bias
        [0.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0],      # position 1: y = (+, +), z = 0
        [-0.5, 0.0, 0.5, -0.5, 0.0, 0.5, 0.0],    # position 2a: y = (continue, EOS), z = (+, +)
        [0.5, -0.5, -0.5, 0.5, -0.5, -0.5, 0.0],  # position 2b: long only, y = -, z = +
        [-0.5, 0.5, 0.5, 0.5, -0.5, -0.5, 0.0],   # position 3: long only, y = +, z = -
    ])
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_gradient_matches_finite_differences():
    d, rng = 4, np.random.default_rng(1)
    seqs = sample_mixture(64, MixtureConfig(d, 0.4), rng)
    w = rng.normal(size=(d + 1, 2 * d + 1)) * parameter_mask(d)

    def loss(w: np.ndarray) -> float:  # sum over positions of each one's mean logistic loss, in float64
        total = 0.0
        for x, o, long in zip(seqs.x.astype(float), seqs.outputs.astype(float), seqs.long):
            steps = [(0, o[0], 0.0, 1.0), (1, 1.0 if long else -1.0, o[0], 1.0)]
            steps += [(k, o[k - 1], o[k - 2], 1.0) for k in range(2, d + 1) if long]
            for k, y, z, _ in steps:
                logit = w[k, :d] @ x + z * (w[k, d:2 * d] @ x) + w[k, 2 * d]
                total += math.log1p(math.exp(-y * logit)) / (len(seqs) if k < 2 else seqs.long.sum())
        return total

    numeric = np.zeros_like(w)
    for i, j in zip(*np.nonzero(parameter_mask(d))):
        e = np.zeros_like(w)
        e[i, j] = 1e-5
        numeric[i, j] = (loss(w + e) - loss(w - e)) / 2e-5
    np.testing.assert_allclose(loss_gradient(LinearAR(w), seqs) * parameter_mask(d), numeric, atol=1e-5)


def test_sgd_keeps_the_architecture_and_learns_the_long_path():
    d = 6
    model = fit(lambda n, g: sample_mixture(n, MixtureConfig(d, 0.5), g), d,
                SGDConfig(steps=300, sequences_per_step=128), np.random.default_rng(0))
    assert np.all(model.weights[parameter_mask(d) == 0] == 0)  # no bias at position 1, no z x there either
    # position k >= 2 puts its weight on the feature z x_k (b_k = b_{k-1} x_k)
    for k in range(2, d + 1):
        assert np.argmax(np.abs(model.weights[k])) == d + k - 1


def test_exact_sequence_probabilities_match_sampling():
    d, rng = 5, np.random.default_rng(2)
    model = LinearAR((rng.normal(size=(d + 1, 2 * d + 1)) * parameter_mask(d)).astype(np.float32))
    x = np.repeat(sample_inputs(3, d, rng), 40_000, axis=0)
    samples = model.generate(x, rng)
    valid = cot_reward(samples)
    long_prob, short_prob = model.correct_sequence_probs(x)
    for i in range(3):
        rows = slice(i * 40_000, (i + 1) * 40_000)
        assert (valid & samples.long)[rows].mean() == pytest.approx(long_prob[rows][0], abs=0.008)
        assert (valid & ~samples.long)[rows].mean() == pytest.approx(short_prob[rows][0], abs=0.008)


# --- Theorem 1: pre-training (d = 20) ---------------------------------------------------------------

@pytest.fixture(scope="module")
def pretrained(request) -> dict[float, dict]:
    from rlntp.theory.experiments import pretrain_report

    return {p: pretrain_report(MixtureConfig(D, p), SGDConfig(), seed=0) for p in (0.25, 0.45)}


@pytest.mark.parametrize("p_cot", [0.25, 0.45])
@pytest.mark.science
def test_pretraining_is_length_calibrated(pretrained, p_cot):
    r = pretrained[p_cot]
    assert abs(r["sampled_long_frac"] - p_cot) <= CALIBRATION_TOLERANCE, r
    assert abs(r["long_correct_prob"] - p_cot) <= CALIBRATION_TOLERANCE, r
    assert abs(r["short_correct_prob"] - (1 - p_cot) / 2) <= CALIBRATION_TOLERANCE, r
    assert abs(r["sampled_acc"] - (1 + p_cot) / 2) <= CALIBRATION_TOLERANCE, r


@pytest.mark.science
def test_greedy_decoding_fails_below_one_third_and_succeeds_above(pretrained):
    assert pretrained[0.25]["greedy_acc"] <= 0.6 and pretrained[0.25]["greedy_long_frac"] == 0.0
    assert pretrained[0.45]["greedy_acc"] >= 0.95 and pretrained[0.45]["greedy_long_frac"] >= 0.95


# --- Theorem 2: STaR (d = 20, p_cot = 1/d), through the command line ---------------------------------

@pytest.mark.science
def test_star_long_fraction_follows_the_recursion_and_greedy_turns_on_time(capsys):
    p_cot = 1 / D
    lines = _run(capsys, ["star", "--d", str(D), "--p-cot", str(p_cot), "--rounds", "5", "--json"]).splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["round"] for r in rows] == list(range(6))
    for r in rows:
        assert r["long_frac_predicted"] == pytest.approx(cf.star_long_frac(p_cot, r["round"]))
        assert abs(r["long_frac"] - r["long_frac_predicted"]) <= STAR_TOLERANCE, r
    for previous, r in zip(rows, rows[1:]):  # the rewarded share: long and correct + short and correct
        assert abs(r["reward_mean"] - (1 + previous["long_frac_predicted"]) / 2) <= STAR_TOLERANCE, r
    assert rows[-1]["long_frac"] > 5 * p_cot  # length grows
    measured = next(r["round"] for r in rows if r["greedy_acc"] >= 0.95)
    assert abs(measured - cf.rounds_until_greedy_long(p_cot)) <= 1
    assert all(r["greedy_acc"] <= 0.6 for r in rows if r["round"] < measured)


# --- the command line -------------------------------------------------------------------------------

TINY = ["--d", "6", "--steps", "200", "--sequences-per-step", "128", "--eval-samples", "2000"]


def test_pretrain_json_is_reproducible_and_the_table_reads(capsys):
    first = json.loads(_run(capsys, ["pretrain", *TINY, "--p-cot", "0.4", "--json"]))
    for key in ("greedy_acc", "sampled_acc", "long_correct_prob", "short_correct_prob"):
        assert 0.0 <= first[key] <= 1.0 and f"{key}_predicted" in first
    assert json.loads(_run(capsys, ["pretrain", *TINY, "--p-cot", "0.4", "--json"])) == first
    assert json.loads(_run(capsys, ["pretrain", *TINY, "--p-cot", "0.4", "--json", "--seed", "1"])) != first
    table = _run(capsys, ["pretrain", *TINY, "--p-cot", "0.4"])
    assert "measured" in table and "greedy_acc" in table and "long_correct_prob" in table


def test_star_table_and_figure(tmp_path, capsys):
    table = _run(capsys, ["star", *TINY, "--p-cot", "0.25", "--rounds", "2", "--warm-start"])
    assert "long_frac_predicted" in table and "predicted 1 (first t with p_t > 1/3)" in table
    assert len([line for line in table.splitlines() if line.strip()[:1].isdigit()]) == 3  # rounds 0, 1, 2
    out = tmp_path / "figs"
    _run(capsys, ["figure", "--out", str(out), *TINY, "--p-cots", "0.2", "0.5", "--star-p-cots", "0.2",
                  "--rounds", "2"])
    for name in ("theorem1_pretraining.png", "theorem2_star.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["pretrain", "--p-cot", "0"], "p_cot must be strictly between 0 and 1"),
    (["pretrain", "--p-cot", "1"], "p_cot must be strictly between 0 and 1"),
    (["star", "--p-cot", "1.5"], "p_cot must be strictly between 0 and 1"),
    (["pretrain", "--p-cot", "-0.2"], "p_cot must be strictly between 0 and 1"),
    (["pretrain", "--d", "1"], "d must be an integer >= 2, got 1"),
    (["star", "--rounds", "0"], "rounds must be >= 1, got 0"),
    (["pretrain", "--steps", "0"], "steps must be >= 1, got 0"),
    (["pretrain", "--sequences-per-step", "0"], "sequences_per_step must be >= 1"),
    (["pretrain", "--lr", "0"], "lr must be > 0, got 0.0"),
    (["star", "--reg", "-1"], "reg must be >= 0, got -1.0"),
    (["pretrain", "--average-last", "1.5"], "average_last must be in (0, 1], got 1.5"),
    (["star", "--eval-samples", "0"], "eval_samples must be >= 1, got 0"),
    (["pretrain", "--seed", "-1"], "seed must be >= 0, got -1"),
    (["figure", "--out", "X", "--p-cots", "0.2", "1.2"], "p_cot must be strictly between 0 and 1"),
    (["figure", "--out", "X", "--star-p-cots", "0"], "p_cot must be strictly between 0 and 1"),
    (["figure", "--out", "X", "--rounds", "0"], "rounds must be >= 1, got 0"),
    (["figure", "--out", "X", "--d", "1"], "d must be an integer >= 2, got 1"),
    (["figure", "--out", "X", "--d", "0"], "d must be an integer >= 2, got 0"),
    (["figure", "--out", "X", "--p-cots"], "p_cots must list at least one mixture weight"),
])
def test_bad_input_stops_with_one_line(tmp_path, monkeypatch, capsys, argv, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and message in err, err
    assert captured.out == ""  # nothing was printed, and nothing was written
    assert not (tmp_path / "X").exists()


def test_figure_into_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main(["figure", "--out", str(target)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: --out {target} is a file; choose a directory path"


def test_the_theory_recipe_runs_as_jobs_of_the_engine_and_status_shows_each_seed(tmp_path, monkeypatch, capsys):
    """The theory recipe through the engine, one job per seed, on a small preset (d = 4, 50 SGD steps: seconds): a
    simulation that crashes (seed 1, a RuntimeError mid-way) fails that seed alone (seed 0 done, its record kept);
    `rlntp reproduce theory --status` names each seed's state and the error without running anything; the rerun
    runs seed 1 only and the recipe's report recomputes from both."""
    import rlntp.experiments.theory as theory
    import rlntp.theory.experiments as simulation
    from rlntp.experiments import reproduce
    from rlntp.experiments.recipe import Preset
    from rlntp.sweeps.engine import SweepFailed

    small = {"seeds": [0, 1], "d": 4, "p_cots": (0.1, 0.5), "star_p_cots": (0.25,), "rounds": 2, "eval_samples": 64,
             "sgd": SGDConfig(steps=50)}
    monkeypatch.setitem(theory.RECIPE.presets, "small", Preset("a test's", small))
    write_figures = simulation.write_figures

    def crashing(out, seed, **arguments):
        if seed == 1:
            raise RuntimeError("the simulation's node went away")
        return write_figures(out, seed=seed, **arguments)

    monkeypatch.setattr(simulation, "write_figures", crashing)
    out = tmp_path / "theory"
    with pytest.raises(SweepFailed, match="1 of 2 runs failed"):
        reproduce("theory", "small", out, "cpu", progress=False)
    rlntp_main(["reproduce", "theory", "--preset", "small", "--status", "--out", str(out)])
    shown = capsys.readouterr().out
    assert "2 runs: 1 done, 1 failed" in shown and "failed   theory/seed=1: RuntimeError: the simulation's node" in shown
    seed0 = (out / "theory" / "seed=0.json").stat().st_mtime_ns
    monkeypatch.setattr(simulation, "write_figures", write_figures)
    reproduce("theory", "small", out, "cpu", progress=False)
    assert (out / "theory" / "seed=0.json").stat().st_mtime_ns == seed0  # done: not simulated again
    measured = json.loads((out / "theory.json").read_text())
    assert [m["seed"] for m in measured["seeds"]] == [0, 1] and measured["seeds"][0]["d"] == 4
    assert len(json.loads((out / "report.json").read_text())["claims"]) == 4
    rlntp_main(["reproduce", "theory", "--preset", "small", "--status", "--out", str(out)])
    assert "2 runs: 2 done" in capsys.readouterr().out


@pytest.mark.parametrize("flags, message", [
    (["--executor", "ray", "--address", "127.0.0.1:1"], "cannot reach the Ray cluster at 127.0.0.1:1"),
    (["--pack", "2"], "--pack 2 packs pre-training runs, and these jobs have none: leave --pack out"),
    (["--report-to", "tensorboard"], "--report-to reports pre- and post-training runs, and these jobs have none"),
])
def test_executor_flags_on_the_theory_recipe_are_checked_before_its_directory(tmp_path, capsys, flags, message):
    """The executor flags of a recipe with a plan of its own are checked as a sweep's are, before its directory is
    claimed: an unreachable Ray cluster in seconds (not Ray's minutes of retries), and the flags that mean nothing
    for its jobs (no pre-training to pack or report) refused in one line."""
    out = tmp_path / "theory"
    with pytest.raises(SystemExit) as exit_info:
        rlntp_main(["reproduce", "theory", *flags, "--out", str(out)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err, err
    assert not out.exists()
