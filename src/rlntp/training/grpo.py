"""GRPO: Group Relative Policy Optimization (Shao et al., 2024; paper App. A.3, B.1).

For each input, G responses o_1..o_G are sampled from the current policy; with group-normalized
advantages A_i = (r_i - mean(r)) / std(r) and per-token ratios rho_it = pi(o_it) / pi_old(o_it),

    J = 1/G sum_i 1/|o_i| sum_t [ min(rho_it A_i, clip(rho_it, 1 - eps, 1 + eps) A_i) - beta KL_it ],

KL_it the k3 estimator of KL(pi || pi_ref). The paper uses beta = 0 (no reference model).
With `token_level=True` the 1/|o_i| weights are replaced by one average over all response tokens of
the batch (DAPO, Yu et al., 2025), so a long response's tokens weigh as much as a short one's.
"""

import torch
from torch import nn

from rlntp.devices import autocast
from rlntp.training.losses import token_logprobs
from rlntp.training.rollout import Rollouts


def group_advantages(rewards: torch.Tensor, group_size: int, eps: float = 1e-4) -> torch.Tensor:
    """(N,) A_i = (r_i - group mean) / (group std + eps), std unbiased; groups are adjacent rows."""
    r = rewards.view(-1, group_size)
    std = r.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(r)
    return ((r - r.mean(dim=1, keepdim=True)) / (std + eps)).flatten()


def clipped_surrogate(logp: torch.Tensor, logp_old: torch.Tensor, advantages: torch.Tensor,
                      clip_eps: float) -> torch.Tensor:
    """(N, T) min(rho A, clip(rho, 1 - eps, 1 + eps) A) per token, rho = exp(logp - logp_old)."""
    ratio = torch.exp(logp - logp_old)
    a = advantages[:, None]
    return torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)


def gradient_clipped(ratio: torch.Tensor, advantages: torch.Tensor, clip_eps: float) -> torch.Tensor:
    """(N, T) bool: tokens where the clip cuts the gradient (ratio below 1 - eps with A < 0, above 1 + eps with A > 0)."""
    a = advantages[:, None]
    return ((ratio < 1 - clip_eps) & (a < 0)) | ((ratio > 1 + clip_eps) & (a > 0))


def k3_kl(logp: torch.Tensor, logp_ref: torch.Tensor) -> torch.Tensor:
    """(N, T) unbiased, non-negative per-token estimate of KL(pi || pi_ref) (Schulman's k3)."""
    delta = logp_ref - logp
    return torch.exp(delta) - delta - 1


def grpo_update(model: nn.Module, optimizer: torch.optim.Optimizer, rollouts: Rollouts, clip_eps: float,
                kl_beta: float = 0.0, ref_model: nn.Module | None = None, updates: int = 1,
                token_level: bool = True, logprob_temperature: float = 1.0, precision: str = "fp32") -> dict[str, float]:
    """`updates` optimizer steps on the GRPO objective of one batch of rollouts; returns logged values.

    Log-probabilities (policy, old policy, reference) come from the logits divided by
    `logprob_temperature` (`PosttrainConfig.logprobs_at_tau`), in forward passes of `precision`
    (`rlntp.devices.autocast`). `rl/clip_frac` counts, as TRL does,
    the response tokens whose clipping changes the gradient: ratio < 1 - eps with a negative advantage,
    or ratio > 1 + eps with a positive one (always 0 with one update per batch: the ratio is 1).
    """
    advantages = group_advantages(rollouts.rewards, rollouts.group_size)
    # Rows whose advantage is 0 (a group with equal rewards) contribute nothing without a KL term:
    # skip them in the forward pass but keep them in the 1/G average.
    rows = torch.arange(len(advantages), device=advantages.device)
    if kl_beta == 0:
        rows = rows[advantages != 0]
    n_total = len(advantages)
    total_tokens = rollouts.response_mask.sum()
    if len(rows) == 0:
        return {"rl/loss": 0.0, "rl/active_frac": 0.0, "rl/clip_frac": 0.0}
    tokens, mask = rollouts.tokens[rows], rollouts.response_mask[rows]
    groups = rows // rollouts.group_size if rollouts.group_size > 1 else None  # a group's prompt runs once
    m = mask[:, 1:].float()
    logp_old = logp_ref = None
    forward = autocast(tokens.device, precision)
    if updates > 1:
        with torch.no_grad(), forward:
            logp_old = token_logprobs(model, tokens, mask, logprob_temperature, groups)[0]
    if kl_beta > 0:
        with torch.no_grad(), forward:
            logp_ref = token_logprobs(ref_model, tokens, mask, logprob_temperature, groups)[0]
    for _ in range(updates):
        with forward:
            logp, _ = token_logprobs(model, tokens, mask, logprob_temperature, groups)
        old = logp.detach() if logp_old is None else logp_old  # on-policy: ratio 1, gradient A * grad log pi
        per_token = clipped_surrogate(logp, old, advantages[rows], clip_eps)
        if kl_beta > 0:
            per_token = per_token - kl_beta * k3_kl(logp, logp_ref)
        if token_level:
            objective = (per_token * m).sum() / total_tokens
        else:
            objective = ((per_token * m).sum(dim=1) / m.sum(dim=1)).sum() / n_total
        (-objective).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    clipped = gradient_clipped(torch.exp(logp.detach() - old), advantages[rows], clip_eps).float()
    return {"rl/loss": -objective.item(), "rl/active_frac": len(rows) / n_total,
            "rl/clip_frac": ((clipped * m).sum() / m.sum()).item()}
