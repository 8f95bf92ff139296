"""The next-token prediction loss on output tokens only (paper App. A.2, eq. 5)."""

import torch
import torch.nn.functional as F
from torch import nn


def next_token_loss(model: nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the masked target tokens, and the number of tokens run through the model.

    tokens, loss_mask: (B, T), loss_mask True where a token is a target (outputs and their EOS).
    Rows are grouped by the position of their last target and each group runs only up to it: a
    short parity sequence is d + 2 tokens, a long one 2d + 1, so at p_cot = 0.25 this skips a third
    of the work a padded batch does. With causal attention and absolute positions the logits of the
    kept positions are exactly those of the padded batch, so the loss is the same.
    """
    ends = loss_mask.shape[1] - torch.argmax(loss_mask.flip(1).int(), dim=1)  # one past the last target
    total = loss_mask[:, 1:].sum()
    loss = tokens.new_zeros((), dtype=torch.float32)
    n_tokens = 0
    for end in torch.unique(ends).tolist():
        rows = ends == end
        chunk, mask = tokens[rows, :end], loss_mask[rows, 1:end]
        logits = model(chunk[:, :-1])  # (b, end - 1, vocab)
        nll = F.cross_entropy(logits.flatten(0, 1).float(), chunk[:, 1:].flatten(), reduction="none")
        loss = loss + (nll * mask.flatten()).sum()
        n_tokens += chunk.shape[0] * (end - 1)
    return loss / total, n_tokens
