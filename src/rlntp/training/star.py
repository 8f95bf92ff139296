"""STaR: Self-Taught Reasoner (Zelikman et al., 2022; paper App. A.3, eq. 6, Algorithm 1).

One round: sample n responses from the current model, keep those with positive reward, and train
on them with the next-token objective for a few epochs,

    theta_{t+1} = argmin_theta  E_x E_{y ~ pi_{theta_t}(.|x)} [ 1{r(y) > 0} * -log pi_theta(y | x) ],

so the next round samples from the model this round returned.
"""

import torch
from torch import nn

from rlntp.devices import autocast
from rlntp.training.losses import next_token_loss
from rlntp.training.rollout import Rollouts


def star_filter(rollouts: Rollouts) -> Rollouts:
    """The rollouts with positive reward."""
    return rollouts.filter(rollouts.rewards > 0)


def star_update(model: nn.Module, optimizer: torch.optim.Optimizer, rollouts: Rollouts, epochs: int,
                batch_size: int, generator: torch.Generator, precision: str = "fp32") -> dict[str, float]:
    """Next-token training on the rewarded rollouts for `epochs` passes of minibatches of `batch_size`
    (forward passes of `precision`, `rlntp.devices.autocast`)."""
    kept = star_filter(rollouts)
    tokens, mask = kept.tokens, kept.response_mask
    n = len(kept.rewards)
    losses = []
    for _ in range(epochs):
        order = torch.randperm(n, generator=generator, device=generator.device)
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            with autocast(tokens.device, precision):
                loss, _ = next_token_loss(model, tokens[idx], mask[idx])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
    return {"rl/loss": sum(losses) / len(losses) if losses else 0.0, "rl/kept_frac": n / len(rollouts.rewards),
            "rl/kept_long_frac": kept.is_long.float().mean().item() if n else 0.0}
