"""Log-probabilities of target tokens, and the next-token loss on output tokens only (paper App. A.2, eq. 5)."""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from rlntp.errors import Diverged


def token_logprobs(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor,
                   temperature: float = 1.0) -> tuple[torch.Tensor, int]:
    """log p(tokens[:, t + 1] | tokens[:, :t + 1]) where mask[:, t + 1], else 0; and the tokens run through the model.

    p is the softmax of the logits divided by `temperature` (1: the model itself).
    tokens, mask: (B, T), mask True where a token is a target (outputs and their EOS); returns (B, T - 1).
    Rows are grouped by the position of their last target and each group runs only up to it: a
    short parity sequence is d + 2 tokens, a long one 2d + 1, so at p_cot = 0.25 this skips a third
    of the work of a padded batch. With causal attention the logits of the kept positions are
    exactly those of the padded batch, so the result is the same. Logits are asked for only from the
    first target on (the models skip work on the positions before it).
    """
    B, T = tokens.shape
    ends = T - torch.argmax(mask.flip(1).int(), dim=1)  # one past the last target of each row
    first = max(int(torch.argmax(mask.int(), dim=1).min()) - 1, 0)  # first position whose logits are needed
    logprobs = tokens.new_zeros((B, T - 1), dtype=torch.float32)
    n_tokens = 0
    for end in torch.unique(ends).tolist():
        rows = torch.nonzero(ends == end)[:, 0]
        chunk = tokens[rows, :end]
        logits = model(chunk[:, :-1], logits_from=first)  # (b, end - 1 - first, vocab)
        logits = logits.float() if temperature == 1.0 else logits.float() / temperature
        picked = F.log_softmax(logits, dim=-1).gather(-1, chunk[:, first + 1 :, None])[..., 0]
        logprobs = logprobs.index_copy(0, rows, F.pad(picked, (first, T - end)))
        n_tokens += chunk.shape[0] * (end - 1)
    return logprobs * mask[:, 1:], n_tokens


def next_token_loss(model: nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the masked target tokens, and the number of tokens run through the model."""
    logprobs, n_tokens = token_logprobs(model, tokens, loss_mask)
    return -logprobs.sum() / loss_mask[:, 1:].sum(), n_tokens


def check_finite_loss(loss: float, step: int, run_dir: Path) -> None:
    """Diverged, naming the step, if a loss is NaN or infinite (the run's checkpoints so far are kept)."""
    if not math.isfinite(loss):
        raise Diverged(f"the loss is {loss} at step {step}; the run stopped, its checkpoints so far in {run_dir} "
                       "are kept; lower --lr (or clip with --max-grad-norm) and start a new run")


def check_finite_weights(model: nn.Module, step: int, run_dir: Path) -> None:
    """Diverged if any weight is NaN or infinite (checked before each evaluation and checkpoint)."""
    finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()]).all()
    if not bool(finite):
        raise Diverged(f"the weights hold NaN or infinite values at step {step}; the run stopped, its earlier "
                       f"checkpoints in {run_dir} are kept; lower --lr and start a new run")
