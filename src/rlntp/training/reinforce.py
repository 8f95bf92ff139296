"""REINFORCE with centered rewards (Williams, 1992; paper App. A.3, eq. 10).

    J = E_x E_{y ~ pi(.|x)} [ (r(y) - r_bar) log pi(y | x) ],   r_bar = mean reward of the batch,

with (r - r_bar) treated as a constant: the surrogate whose gradient is the policy gradient.
"""

import torch
from torch import nn

from rlntp.devices import autocast
from rlntp.training.losses import token_logprobs
from rlntp.training.rollout import Rollouts


def centered_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """(N,) r_i - mean(r)."""
    return rewards - rewards.mean()


def reinforce_update(model: nn.Module, optimizer: torch.optim.Optimizer, rollouts: Rollouts,
                     logprob_temperature: float = 1.0, precision: str = "fp32") -> dict[str, float]:
    """One optimizer step on the centered-REINFORCE surrogate of a batch of rollouts.

    log pi is taken from the logits divided by `logprob_temperature` (`PosttrainConfig.logprobs_at_tau`),
    in a forward pass of `precision` (`rlntp.devices.autocast`).
    """
    advantages = centered_advantages(rollouts.rewards)
    rows = torch.nonzero(advantages != 0)[:, 0]  # zero-advantage rows add nothing to the gradient
    if len(rows) == 0:
        return {"rl/loss": 0.0, "rl/active_frac": 0.0}
    groups = rows // rollouts.group_size if rollouts.group_size > 1 else None  # a prompt runs once
    with autocast(rows.device, precision):
        logp, _ = token_logprobs(model, rollouts.tokens[rows], rollouts.response_mask[rows], logprob_temperature,
                                 groups)
    sequence_logp = logp.sum(dim=1)  # log pi(y | x)
    objective = (advantages[rows] * sequence_logp).sum() / len(advantages)
    (-objective).backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"rl/loss": -objective.item(), "rl/active_frac": len(rows) / len(advantages)}
