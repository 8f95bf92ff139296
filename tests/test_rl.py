"""RL post-training: hand-computed advantages, surrogates and rewards; one update of each algorithm
on a tiny model ("parameters changed", as in TRL's tests); rollouts from a trained model; the config.

Parity examples use d = 4 and x = 1 0 1 1, whose prefix parities are b = 1 1 0 1 (parity 1):

    long    1 1 0 1 EOS        medium  1 0 1 EOS EOS      short  1 EOS EOS EOS EOS
"""

import copy
import math

import pytest
import torch

from rlntp.errors import ConfigError
from rlntp.models import ModelConfig, build_model
from rlntp.tasks.base import output_lengths
from rlntp.tasks.parity import EOS, ParityTask
from rlntp.training.grpo import clipped_surrogate, gradient_clipped, group_advantages, grpo_update, k3_kl
from rlntp.training.losses import token_logprobs
from rlntp.training.posttrain import PosttrainConfig
from rlntp.training.reinforce import centered_advantages, reinforce_update
from rlntp.training.rewards import chain_of_thought, compute_reward, end_to_end, length_penalized
from rlntp.training.rollout import Rollouts, sample_rollouts
from rlntp.training.star import star_filter, star_update

pytestmark = pytest.mark.unit

E = EOS
X = [1, 0, 1, 1]  # parity 1, prefix parities 1 1 0 1
Y = [0, 1, 1, 0]  # parity 0, prefix parities 0 1 0 0


def _rollouts(inputs, outputs, rewards, group_size):
    """A hand-built batch: lengths and the long flag derived from the outputs, rewards given."""
    outputs = torch.tensor(outputs)
    lengths = output_lengths(outputs, EOS)
    return Rollouts(inputs=torch.tensor(inputs), outputs=outputs, lengths=lengths, is_long=lengths == len(inputs[0]),
                    rewards=torch.tensor(rewards, dtype=torch.float32), components={}, group_size=group_size)


def _mixed_batch():
    """Two prompts x four rollouts with end-to-end rewards 1 1 0 0 in each group (non-zero advantages)."""
    outputs = [
        [1, 1, 0, 1, E],  # X long, correct
        [1, E, E, E, E],  # X short, correct
        [0, E, E, E, E],  # X short, wrong
        [1, 1, 0, 1, 1],  # X no EOS, wrong
        [0, 1, 0, 0, E],  # Y long, correct
        [0, 0, 0, E, E],  # Y medium (b1 b3 b4), correct
        [1, E, E, E, E],  # Y short, wrong
        [0, 1, 0, 1, E],  # Y wrong long
    ]
    return _rollouts([X] * 4 + [Y] * 4, outputs, [1, 1, 0, 0, 1, 1, 0, 0], group_size=4)


def _tiny_model(seed=0):
    """A 1-layer GPT-2 for d = 4 (context 9), its weights perturbed so that biases and LayerNorms are not defaults."""
    model = build_model(ModelConfig(layers=1, width=32, heads=2), vocab_size=3, context_len=9, eos_id=E, seed=seed)
    g = torch.Generator().manual_seed(100 + seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model.train()


def _snapshot(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _unchanged(model, before):
    """Names of the parameters equal to their snapshot."""
    return [name for name, p in model.named_parameters() if torch.equal(p, before[name])]


def _sequence_logprob(model, rollouts):
    """(N,) log pi(response | prompt), summed over the response tokens and EOS."""
    with torch.no_grad():
        return token_logprobs(model, rollouts.tokens, rollouts.response_mask)[0].sum(dim=1)


# ---------------------------------------------------------------- advantages, surrogate, KL


def test_group_advantages_are_normalized_within_adjacent_groups():
    rewards = torch.tensor([1.0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0, 0])
    # group 1: mean 0.5, unbiased std sqrt(4 * 0.25 / 3) = 0.5773503; A = +-0.5 / (0.5773503 + 1e-4) = +-0.8658754
    # group 2: equal rewards, std 0: A = 0 / 1e-4 = 0
    # group 3: mean 0.25, unbiased std sqrt((0.5625 + 3 * 0.0625) / 3) = 0.5;
    #          A = 0.75 / 0.5001 = 1.4997001, -0.25 / 0.5001 = -0.4999000
    a, b, c = 0.8658754, 1.4997001, -0.4999000
    expected = torch.tensor([a, -a, -a, a, 0, 0, 0, 0, b, c, c, c])
    torch.testing.assert_close(group_advantages(rewards, group_size=4), expected, rtol=0, atol=1e-6)


def test_group_advantages_of_pairs_and_of_groups_of_one():
    # pairs of length-penalized rewards: (0.5, -0.5) has mean 0 and unbiased std sqrt(0.5) = 0.7071068;
    # A = +-0.5 / 0.7072068 = +-0.7070068
    torch.testing.assert_close(group_advantages(torch.tensor([0.5, -0.5, 0.3, 0.3]), group_size=2),
                               torch.tensor([0.7070068, -0.7070068, 0, 0]), rtol=0, atol=1e-6)
    # a group of one has nothing to compare with: every advantage is 0
    assert torch.equal(group_advantages(torch.tensor([1.0, 0.0, 0.4]), group_size=1), torch.zeros(3))


def test_centered_advantages_subtract_the_batch_mean():
    # mean 0.6: 1 - 0.6 = 0.4, 0 - 0.6 = -0.6
    torch.testing.assert_close(centered_advantages(torch.tensor([1.0, 0, 0, 1, 1])),
                               torch.tensor([0.4, -0.6, -0.6, 0.4, 0.4]))
    # mean 1.3 / 3 = 0.4333333: 0.1666667, -0.6333333, 0.4666667
    torch.testing.assert_close(centered_advantages(torch.tensor([0.6, -0.2, 0.9])),
                               torch.tensor([0.1666667, -0.6333333, 0.4666667]))


def test_clipped_surrogate_takes_the_pessimistic_value_and_its_gradient():
    # ratios 1.5, 0.5, 1.1 (pi / pi_old = 0.3 / 0.2, 0.1 / 0.2, 0.22 / 0.2), clip_eps 0.2 -> clip(rho) = 1.2, 0.8, 1.1
    logp_old = torch.log(torch.full((2, 3), 0.2))
    logp = torch.log(torch.tensor([[0.3, 0.1, 0.22], [0.3, 0.1, 0.22]])).requires_grad_(True)
    advantages = torch.tensor([2.0, -1.0])
    value = clipped_surrogate(logp, logp_old, advantages, clip_eps=0.2)
    # A = +2: rho A = 3, 1, 2.2; clip(rho) A = 2.4, 1.6, 2.2 -> min 2.4 (clipped above), 1.0, 2.2
    # A = -1: rho A = -1.5, -0.5, -1.1; clip(rho) A = -1.2, -0.8, -1.1 -> min -1.5, -0.8 (clipped below), -1.1
    torch.testing.assert_close(value, torch.tensor([[2.4, 1.0, 2.2], [-1.5, -0.8, -1.1]]))
    # d(rho A) / d logp = rho A where the unclipped term is the minimum; 0 where the clipped one is
    value.sum().backward()
    torch.testing.assert_close(logp.grad, torch.tensor([[0.0, 1.0, 2.2], [-1.5, 0.0, -1.1]]))


def test_clip_fraction_counts_only_tokens_whose_gradient_the_clip_cuts():
    # the same ratios: with A = +2 only 1.5 (above 1 + eps) is cut; with A = -1 only 0.5 (below 1 - eps),
    # exactly the zeros of the gradient above; 1.5 with A < 0 and 0.5 with A > 0 keep their gradient
    ratio = torch.tensor([[1.5, 0.5, 1.1], [1.5, 0.5, 1.1]])
    cut = gradient_clipped(ratio, torch.tensor([2.0, -1.0]), clip_eps=0.2)
    assert cut.tolist() == [[True, False, False], [False, True, False]]


def test_k3_kl_by_hand_and_zero_at_the_reference():
    logp = torch.log(torch.tensor([[0.5, 0.25]]))
    logp_ref = torch.log(torch.tensor([[0.25, 0.5]]))
    # delta = log(pi_ref / pi): log(0.5) -> 0.5 + 0.6931472 - 1 = 0.1931472; log(2) -> 2 - 0.6931472 - 1 = 0.3068528
    torch.testing.assert_close(k3_kl(logp, logp_ref), torch.tensor([[0.1931472, 0.3068528]]))
    same = torch.log(torch.tensor([[0.1, 0.7, 0.2]]))
    assert torch.equal(k3_kl(same, same), torch.zeros(1, 3))


# ---------------------------------------------------------------- rewards


# d = 4, x = 1 0 1 1 in every row
REWARD_CASES = [
    # output             e2e  cot  length-penalized: e2e - 0.4 * length / 4
    ([1, 1, 0, 1, E], 1, 1, 0.6),  # long, length 4: 1 - 0.4
    ([1, 0, 1, E, E], 1, 1, 0.7),  # medium b1 b3 b4, length 3: 1 - 0.3
    ([1, E, E, E, E], 1, 1, 0.9),  # short, length 1: 1 - 0.1
    ([0, E, E, E, E], 0, 0, -0.1),  # wrong short: 0 - 0.1
    ([1, 1, 0, 1, 1], 0, 0, -0.5),  # no EOS: wrong, length d + 1 = 5: 0 - 0.5
    ([0, 0, 1, E, E], 1, 0, 0.7),  # right answer after a wrong chain, length 3: 1 - 0.3
    ([E, E, E, E, E], 0, 0, 0.0),  # EOS first: no answer, length 0
]


def _reward_inputs():
    task = ParityTask(d=4, p_cot=0.5)
    outputs = torch.tensor([case[0] for case in REWARD_CASES])
    return task, torch.tensor([X] * len(REWARD_CASES)), outputs


def test_end_to_end_reward_checks_the_token_before_eos():
    task, x, outputs = _reward_inputs()
    r = end_to_end(task, x, outputs)
    expected = torch.tensor([float(case[1]) for case in REWARD_CASES])
    assert torch.equal(r.value, expected)
    assert r.components.keys() == {"correct"} and torch.equal(r.components["correct"], expected)


def test_chain_of_thought_reward_needs_a_whole_valid_sequence():
    task, x, outputs = _reward_inputs()
    r = chain_of_thought(task, x, outputs)
    assert torch.equal(r.value, torch.tensor([1.0, 1, 1, 0, 0, 0, 0]))
    assert r.components.keys() == {"valid_cot", "correct"}
    assert torch.equal(r.components["valid_cot"], torch.tensor([1.0, 1, 1, 0, 0, 0, 0]))
    assert torch.equal(r.components["correct"], torch.tensor([1.0, 1, 1, 0, 0, 1, 0]))


def test_length_penalized_reward_subtracts_lambda_length_over_d():
    task, x, outputs = _reward_inputs()
    r = length_penalized(task, x, outputs, penalty=0.4)
    torch.testing.assert_close(r.value, torch.tensor([case[3] for case in REWARD_CASES]))
    assert r.components.keys() == {"correct", "length_penalty"}
    assert torch.equal(r.components["correct"], torch.tensor([1.0, 1, 1, 0, 0, 1, 0]))
    # 0.4 * (4, 3, 1, 1, 5, 3, 0) / 4
    torch.testing.assert_close(r.components["length_penalty"], torch.tensor([0.4, 0.3, 0.1, 0.1, 0.5, 0.3, 0.0]))


def test_compute_reward_dispatches_by_name_and_rejects_unknown_names():
    task, x, outputs = _reward_inputs()
    assert torch.equal(compute_reward("e2e", task, x, outputs).value, torch.tensor([1.0, 1, 1, 0, 0, 1, 0]))
    assert torch.equal(compute_reward("cot", task, x, outputs).value, torch.tensor([1.0, 1, 1, 0, 0, 0, 0]))
    torch.testing.assert_close(compute_reward("length", task, x, outputs).value,  # default lambda 0.4
                               torch.tensor([0.6, 0.7, 0.9, -0.1, -0.5, 0.7, 0.0]))
    # lambda 0.2: 1 - 0.2 * 4 / 4 = 0.8, 1 - 0.15, 1 - 0.05, -0.05, -0.25, 1 - 0.15, 0
    torch.testing.assert_close(compute_reward("length", task, x, outputs, length_penalty=0.2).value,
                               torch.tensor([0.8, 0.85, 0.95, -0.05, -0.25, 0.85, 0.0]))
    with pytest.raises(ConfigError, match="unknown reward 'f1'; choose one of: e2e, cot, length"):
        compute_reward("f1", task, x, outputs)


def test_star_filter_keeps_exactly_the_positive_rewards():
    batch = _rollouts([X, Y, X, Y, X],
                      [[1, 1, 0, 1, E], [1, E, E, E, E], [1, E, E, E, E], [0, E, E, E, E], [1, 0, 1, E, E]],
                      [1.0, 0.0, 0.5, -0.3, 1.0], group_size=5)
    batch = Rollouts(batch.inputs, batch.outputs, batch.lengths, batch.is_long, batch.rewards,
                     {"correct": torch.tensor([1.0, 0, 1, 0, 1])}, batch.group_size)
    kept = star_filter(batch)
    keep = [0, 2, 4]
    assert torch.equal(kept.rewards, torch.tensor([1.0, 0.5, 1.0]))
    assert torch.equal(kept.inputs, batch.inputs[keep]) and torch.equal(kept.outputs, batch.outputs[keep])
    assert torch.equal(kept.lengths, torch.tensor([4, 1, 3])) and torch.equal(kept.is_long, torch.tensor([True, False, False]))
    assert torch.equal(kept.components["correct"], torch.tensor([1.0, 1, 1]))
    assert kept.group_size == 1


# ---------------------------------------------------------------- rollout records and log-probabilities


def test_rollouts_tokens_and_response_mask_by_hand():
    # d = 2; responses: long (length 2), short (1), no EOS (length d + 1 = 3), EOS first (0)
    r = _rollouts([[1, 1], [0, 1], [1, 0], [0, 0]],
                  [[1, 0, E], [1, E, E], [0, 1, 1], [E, E, E]], [1, 1, 0, 0], group_size=2)
    assert torch.equal(r.lengths, torch.tensor([2, 1, 3, 0]))
    assert torch.equal(r.tokens, torch.tensor([[1, 1, 1, 0, E], [0, 1, 1, E, E], [1, 0, 0, 1, 1], [0, 0, E, E, E]]))
    # True from position d = 2 up to and including the first EOS at position d + length (all outputs if none)
    assert torch.equal(r.response_mask, torch.tensor([[0, 0, 1, 1, 1],
                                                      [0, 0, 1, 1, 0],
                                                      [0, 0, 1, 1, 1],
                                                      [0, 0, 1, 0, 0]]).bool())


def test_token_logprobs_equal_the_padded_forward_and_are_zero_outside_the_mask():
    model = _tiny_model()
    batch = _mixed_batch()
    tokens, mask = batch.tokens, batch.response_mask
    logprobs, n_tokens = token_logprobs(model, tokens, mask)
    with torch.no_grad():
        full = torch.log_softmax(model(tokens[:, :-1]), dim=-1)  # (8, 8, 3)
    gathered = full.gather(-1, tokens[:, 1:, None])[..., 0]
    assert logprobs.shape == (8, 8)
    torch.testing.assert_close(logprobs[mask[:, 1:]], gathered[mask[:, 1:]], rtol=1e-5, atol=1e-6)
    assert torch.all(logprobs[~mask[:, 1:]] == 0)
    assert torch.all(logprobs[mask[:, 1:]] < 0)
    # each row runs up to its last target: lengths 4 1 1 5 4 3 1 4 -> last target min(4 + length, 8),
    # tokens run 8 5 5 8 8 7 5 8 = 54
    assert n_tokens == 54


def test_token_logprobs_at_a_temperature_are_those_of_the_scaled_logits():
    model = _tiny_model()
    batch = _mixed_batch()
    tokens, mask = batch.tokens, batch.response_mask
    logprobs, _ = token_logprobs(model, tokens, mask, temperature=0.5)
    with torch.no_grad():
        full = torch.log_softmax(model(tokens[:, :-1]) / 0.5, dim=-1)
    gathered = full.gather(-1, tokens[:, 1:, None])[..., 0]
    torch.testing.assert_close(logprobs[mask[:, 1:]], gathered[mask[:, 1:]], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "mistral"])
def test_token_logprobs_of_rollouts_equal_the_row_by_row_pass_in_value_and_gradient(arch):
    """Identical rows run once; each group's prompt runs once, its keys and values serving the group's rows."""
    model = build_model(ModelConfig(arch=arch, layers=2, width=32, heads=2), vocab_size=3, context_len=9,
                        eos_id=E, seed=0).train()
    batch = _mixed_batch()
    rows = torch.tensor([0, 0, 1, 1, 1, 3, 4, 6, 7, 7])  # lengths differ, and rollouts repeat within a group
    tokens, mask = batch.tokens[rows], batch.response_mask[rows]

    def run(groups):
        model.zero_grad()
        logprobs, n_tokens = token_logprobs(model, tokens, mask, temperature=0.7, groups=groups)
        (logprobs * torch.arange(1, 9)).sum().backward()  # a different weight on every position
        return logprobs.detach(), n_tokens, [p.grad.clone() for p in model.parameters()]

    plain, n_plain, grads_plain = run(None)
    shared, n_shared, grads_shared = run(rows // 4)
    torch.testing.assert_close(shared, plain, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads_shared, grads_plain):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    assert torch.all(shared[~mask[:, 1:]] == 0)
    # plain: rows run 8 8 5 5 5 8 8 5 8 8 tokens = 68; shared: 2 prompts x 4 tokens, then each distinct
    # row's response tokens but the last: 4 1 4 4 1 4 = 18
    assert (n_plain, n_shared) == (68, 26)


def test_token_logprobs_refuse_groups_whose_prompts_differ():
    batch = _mixed_batch()
    with pytest.raises(ValueError, match="rows of one group differ"):
        token_logprobs(_tiny_model(), batch.tokens, batch.response_mask, groups=torch.zeros(8, dtype=torch.long))


@pytest.mark.parametrize("update", ["grpo", "reinforce"])
def test_logprobs_at_tau_changes_the_update_only_away_from_temperature_one(update):
    def step(temperature):
        model = _tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        if update == "grpo":
            grpo_update(model, optimizer, _mixed_batch(), clip_eps=0.2, logprob_temperature=temperature)
        else:
            reinforce_update(model, optimizer, _mixed_batch(), logprob_temperature=temperature)
        return torch.cat([p.detach().flatten() for p in model.parameters()])

    at_one = step(1.0)
    assert torch.equal(at_one, step(1.0))
    assert not torch.allclose(at_one, step(0.5))


# ---------------------------------------------------------------- one update of each algorithm


def test_grpo_update_changes_every_parameter():
    model = _tiny_model()
    before = _snapshot(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    stats = grpo_update(model, optimizer, _mixed_batch(), clip_eps=0.2)
    assert _unchanged(model, before) == []
    assert stats["rl/active_frac"] == 1.0 and stats["rl/clip_frac"] == 0.0  # on-policy: every ratio is 1


def test_reinforce_update_changes_every_parameter():
    model = _tiny_model()
    batch = _mixed_batch()
    # hand: mean reward 0.5, advantages +-0.5; loss = -sum_i A_i log pi(y_i | x_i) / 8
    expected_loss = -(0.5 * (_sequence_logprob(model, batch) * torch.tensor([1.0, 1, -1, -1, 1, 1, -1, -1])).sum() / 8)
    before = _snapshot(model)
    stats = reinforce_update(model, torch.optim.Adam(model.parameters(), lr=1e-3), batch)
    assert _unchanged(model, before) == []
    assert stats["rl/active_frac"] == 1.0
    assert stats["rl/loss"] == pytest.approx(expected_loss.item(), rel=1e-5)


def test_star_update_changes_every_parameter():
    model = _tiny_model()
    before = _snapshot(model)
    stats = star_update(model, torch.optim.Adam(model.parameters(), lr=1e-3), _mixed_batch(), epochs=1,
                        batch_size=8, generator=torch.Generator().manual_seed(0))
    assert _unchanged(model, before) == []
    # 4 of 8 kept (rewards 1 1 0 0 twice), two of them long (length d = 4)
    assert stats["rl/kept_frac"] == 0.5 and stats["rl/kept_long_frac"] == 0.5
    assert stats["rl/loss"] > 0


def test_updates_with_equal_rewards_leave_the_parameters_unchanged():
    batch = _mixed_batch()
    all_rewarded = _rollouts(batch.inputs.tolist(), batch.outputs.tolist(), [1.0] * 8, group_size=4)
    none_rewarded = _rollouts(batch.inputs.tolist(), batch.outputs.tolist(), [0.0] * 8, group_size=4)
    model = _tiny_model()
    before = _snapshot(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    # GRPO: every group has equal rewards -> zero advantages, and there is no KL term
    assert grpo_update(model, optimizer, all_rewarded, clip_eps=0.2)["rl/active_frac"] == 0.0
    assert len(_unchanged(model, before)) == len(before)
    # REINFORCE: every reward equals the batch mean
    assert reinforce_update(model, optimizer, all_rewarded)["rl/active_frac"] == 0.0
    assert len(_unchanged(model, before)) == len(before)
    # STaR: nothing to keep
    assert star_update(model, optimizer, none_rewarded, epochs=2, batch_size=4,
                       generator=torch.Generator().manual_seed(0))["rl/kept_frac"] == 0.0
    assert len(_unchanged(model, before)) == len(before)


def test_grpo_skips_groups_with_equal_rewards():
    batch = _mixed_batch()
    half = _rollouts(batch.inputs.tolist(), batch.outputs.tolist(), [1, 1, 0, 0, 1, 1, 1, 1], group_size=4)
    model = _tiny_model()
    stats = grpo_update(model, torch.optim.Adam(model.parameters(), lr=1e-3), half, clip_eps=0.2)
    assert stats["rl/active_frac"] == 0.5


@pytest.mark.parametrize("token_level, expected_loss", [
    # group X: long r = 1, three wrong shorts r = 0 -> A = 1.4997001, -0.4999000 x 3 (see the advantages test);
    # group Y: all 0 -> A = 0. On-policy every ratio is 1, so the objective is a weighted sum of advantages.
    # token level: response tokens (with EOS) 5, 2, 2, 2 (+ 5, 2, 2, 2 for Y, in the denominator only):
    #   (5 * 1.4997001 - 6 * 0.4999000) / 22 = 0.2045046
    (True, -0.2045046),
    # per response: (1.4997001 - 3 * 0.4999000) / 8 = 0 (advantages sum to 0 within a group)
    (False, 0.0),
])
def test_grpo_reports_the_hand_computed_on_policy_objective(token_level, expected_loss):
    outputs = [[1, 1, 0, 1, E]] + [[0, E, E, E, E]] * 3 + [[0, 1, 0, 0, E]] + [[1, E, E, E, E]] * 3
    batch = _rollouts([X] * 4 + [Y] * 4, outputs, [1, 0, 0, 0, 0, 0, 0, 0], group_size=4)
    model = _tiny_model()
    stats = grpo_update(model, torch.optim.Adam(model.parameters(), lr=1e-3), batch, clip_eps=0.2,
                        token_level=token_level)
    assert stats["rl/loss"] == pytest.approx(expected_loss, abs=1e-6)
    assert stats["rl/active_frac"] == 0.5


def test_grpo_with_two_updates_and_a_tiny_clip_range_reports_clipping():
    model = _tiny_model()
    stats = grpo_update(model, torch.optim.Adam(model.parameters(), lr=1e-2), _mixed_batch(), clip_eps=1e-6,
                        updates=2)
    # the second pass sees the policy after one step: its ratios move away from 1 by more than 1e-6
    assert 0 < stats["rl/clip_frac"] <= 1


def test_grpo_with_a_kl_penalty_to_a_reference_model_updates_the_parameters():
    model = _tiny_model()
    ref_model = copy.deepcopy(model).eval().requires_grad_(False)
    ref_before = _snapshot(ref_model)
    before = _snapshot(model)
    stats = grpo_update(model, torch.optim.Adam(model.parameters(), lr=1e-3), _mixed_batch(), clip_eps=0.2,
                        kl_beta=0.1, ref_model=ref_model, updates=2)
    assert _unchanged(model, before) == []
    assert len(_unchanged(ref_model, ref_before)) == len(ref_before)  # the reference stays fixed
    assert math.isfinite(stats["rl/loss"]) and stats["rl/active_frac"] == 1.0
    # the KL term acts on the second pass (on the first, pi == pi_ref and its gradient is 0)
    no_kl = _tiny_model()
    grpo_update(no_kl, torch.optim.Adam(no_kl.parameters(), lr=1e-3), _mixed_batch(), clip_eps=0.2, updates=2)
    assert _unchanged(model, _snapshot(no_kl)) == []


def test_grpo_raises_the_probability_of_the_rewarded_responses():
    # both prompts: the long response is rewarded, the correct short and medium ones are not
    outputs = [[1, 1, 0, 1, E], [1, 1, 0, 1, E], [1, E, E, E, E], [1, 0, 1, E, E],
               [0, 1, 0, 0, E], [0, 1, 0, 0, E], [0, E, E, E, E], [0, 0, 0, E, E]]
    batch = _rollouts([X] * 4 + [Y] * 4, outputs, [1, 1, 0, 0, 1, 1, 0, 0], group_size=4)
    rewarded = batch.rewards > 0
    model = _tiny_model()
    logp_before = _sequence_logprob(model, batch)
    grpo_update(model, torch.optim.Adam(model.parameters(), lr=1e-2), batch, clip_eps=0.2)
    logp_after = _sequence_logprob(model, batch)
    assert torch.all(logp_after[rewarded] > logp_before[rewarded])
    assert torch.all(logp_after[~rewarded] < logp_before[~rewarded])


# ---------------------------------------------------------------- sampling rollouts


def test_sample_rollouts_from_a_trained_model(small_trained):
    task, model = small_trained
    modes = []
    hook = model.register_forward_pre_hook(lambda module, args: modes.append(module.training))
    try:
        model.train()
        g = torch.Generator().manual_seed(0)
        r = sample_rollouts(model, task, task.sample_prompts(16, g), rollouts_per_prompt=4, temperature=1.0,
                            reward="length", generator=g, length_penalty=0.4)
        assert model.training and modes and not any(modes)  # generated in eval mode, train mode restored
        model.eval()
        g = torch.Generator().manual_seed(0)
        again = sample_rollouts(model, task, task.sample_prompts(16, g), 4, 1.0, "length", g, 0.4)
        assert not model.training
    finally:
        hook.remove()
        model.eval()

    d = task.d
    assert r.inputs.shape == (64, d) and r.outputs.shape == (64, d + 1)
    assert r.lengths.shape == r.is_long.shape == r.rewards.shape == (64,)
    assert r.rewards.dtype == torch.float32 and r.group_size == 4
    # each prompt repeated 4 times in adjacent rows; the 16 prompts are fresh random inputs
    groups = r.inputs.view(16, 4, d)
    assert torch.equal(groups, groups[:, :1].expand(16, 4, d))
    assert len(set(map(tuple, groups[:, 0].tolist()))) >= 8
    # records agree with the outputs and the reward
    assert torch.equal(r.lengths, output_lengths(r.outputs, EOS, d + 1))
    assert torch.equal(r.is_long, r.lengths == d)
    expected = compute_reward("length", task, r.inputs, r.outputs, 0.4)
    assert torch.equal(r.rewards, expected.value)
    assert r.components.keys() == expected.components.keys()
    for name in expected.components:
        assert torch.equal(r.components[name], expected.components[name])
    # sampling at temperature 1 gives different responses to the same prompt
    assert any(len(set(map(tuple, group.tolist()))) > 1 for group in r.outputs.view(16, 4, d + 1))
    # the same seed gives the same rollouts, in either mode; another seed gives others
    assert torch.equal(again.inputs, r.inputs) and torch.equal(again.outputs, r.outputs)
    g = torch.Generator().manual_seed(1)
    other = sample_rollouts(model, task, task.sample_prompts(16, g), 4, 1.0, "length", g, 0.4)
    assert not torch.equal(other.outputs, r.outputs)


# ---------------------------------------------------------------- configuration


@pytest.mark.parametrize("kwargs, message", [
    (dict(algo="ppo"), "unknown algo 'ppo'; choose one of: grpo, reinforce, star"),
    (dict(reward="f1"), "unknown reward 'f1'; choose one of: e2e, cot, length"),
    (dict(temperature=0.0), "temperature must be > 0, got 0.0"),
    (dict(temperature=-1.0), "temperature must be > 0, got -1.0"),
    (dict(algo="grpo", rollouts_per_prompt=1), "grpo needs rollouts_per_prompt >= 2 .*, got 1"),
    (dict(clip_eps=0.0), r"clip_eps must be in \(0, 1\), got 0.0"),
    (dict(clip_eps=1.0), r"clip_eps must be in \(0, 1\), got 1.0"),
    (dict(clip_eps=1.5), r"clip_eps must be in \(0, 1\), got 1.5"),
    (dict(kl_beta=-0.1), "kl_beta must be >= 0, got -0.1"),
    (dict(prompts_per_step=0), "prompts_per_step must be >= 1, got 0"),
    (dict(lr=0.0), "lr must be > 0, got 0.0"),
    (dict(precision="fp16"), "unknown precision 'fp16'; choose one of: fp32, bf16"),
])
def test_invalid_posttrain_configs_raise_a_clear_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PosttrainConfig(**kwargs)


@pytest.mark.parametrize("algo, prompts, rollouts", [("grpo", 8, 8), ("reinforce", 64, 1), ("star", 3200, 1)])
def test_posttrain_batch_defaults_per_algorithm(algo, prompts, rollouts):
    cfg = PosttrainConfig(algo=algo)
    assert (cfg.prompts, cfg.rollouts, cfg.samples_per_step) == (prompts, rollouts, prompts * rollouts)
    given = PosttrainConfig(algo=algo, prompts_per_step=4, rollouts_per_prompt=2)
    assert (given.prompts, given.rollouts, given.samples_per_step) == (4, 2, 8)
    assert PosttrainConfig(algo="reinforce", rollouts_per_prompt=1).rollouts == 1  # only grpo needs groups
