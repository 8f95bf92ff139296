"""Log-probabilities of target tokens, and the next-token loss on output tokens only (paper App. A.2, eq. 5)."""

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from transformers import DynamicCache

from rlntp.errors import Diverged


def token_logprobs(model: nn.Module, tokens: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0,
                   groups: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """log p(tokens[:, t + 1] | tokens[:, :t + 1]) where mask[:, t + 1], else 0; and the tokens run through the model.

    p is the softmax of the logits divided by `temperature` (1: the model itself).
    tokens, mask: (B, T), mask True where a token is a target (outputs and their EOS); returns (B, T - 1).
    Rows are grouped by the position of their last target and each group runs only up to it: a
    short parity sequence is d + 2 tokens, a long one 2d + 1, so at p_cot = 0.25 this skips a third
    of the work of a padded batch. With causal attention the logits of the kept positions are
    exactly those of the padded batch, so the result is the same. Logits are asked for only from the
    first target on (the models skip work on the positions before it).

    groups: (B,) ids, rows of one id sharing every token before the first target (RL's rollouts of
    one prompt). Then identical rows run once (a group's rollouts often repeat: every correct
    chain of thought for one parity input is the same sequence), and each group's prompt runs once,
    its keys and values (differentiably: the gradient of every row flows back into them) serving the
    rows' responses. In GRPO most of a row's tokens are its prompt, so together these remove most
    of the forward and backward work. The same numbers up to float rounding (tests/test_rl.py
    compares values and gradients).
    """
    B, T = tokens.shape
    ends = T - torch.argmax(mask.flip(1).int(), dim=1)  # one past the last target of each row
    first = max(int(torch.argmax(mask.int(), dim=1).min()) - 1, 0)  # first position whose logits are needed
    logprobs = tokens.new_zeros((B, T - 1), dtype=torch.float32)
    if groups is not None and first > 0:
        # identical rows run once; index_select, not indexing: its backward is several times faster on a CPU
        unique, copies = torch.unique(torch.cat([tokens, mask.long()], dim=1), dim=0, return_inverse=True)
        one_row = torch.empty(len(unique), dtype=torch.long, device=tokens.device)
        one_row[copies] = torch.arange(B, device=tokens.device)
        unique_logprobs, n_tokens = _shared_prompt_logprobs(
            model, tokens[one_row], ends[one_row], first, groups[one_row], temperature, logprobs[one_row])
        return unique_logprobs.index_select(0, copies) * mask[:, 1:], n_tokens
    n_tokens = 0
    for end in torch.unique(ends).tolist():
        rows = torch.nonzero(ends == end)[:, 0]
        chunk = tokens[rows, :end]
        logits = model(chunk[:, :-1], logits_from=first)  # (b, end - 1 - first, vocab)
        logprobs = logprobs.index_copy(0, rows, F.pad(_picked(logits, chunk, first, temperature), (first, T - end)))
        n_tokens += chunk.shape[0] * (end - 1)
    return logprobs * mask[:, 1:], n_tokens


def _shared_prompt_logprobs(model: nn.Module, tokens: torch.Tensor, ends: torch.Tensor, first: int,
                            groups: torch.Tensor, temperature: float,
                            logprobs: torch.Tensor) -> tuple[torch.Tensor, int]:
    """token_logprobs (unmasked) with each group's tokens 0..first run once (a Hugging Face DynamicCache holds them)."""
    B, T = tokens.shape
    _, group = torch.unique(groups, return_inverse=True)  # (B,) 0..P-1
    one_row = torch.empty(int(group.max()) + 1, dtype=torch.long, device=tokens.device)
    one_row[group] = torch.arange(B, device=tokens.device)  # a row of each group
    prompts = tokens[one_row, :first + 1]
    if not bool((tokens[:, :first + 1] == prompts[group]).all()):
        raise ValueError("token_logprobs: rows of one group differ before their first target; "
                         "groups must mark rollouts of one prompt")
    prompt_cache = DynamicCache()
    prompt_logits = model(prompts, cache=prompt_cache, logits_from=first)  # (P, 1, vocab): the first target's
    n_tokens = prompts.numel()
    for end in torch.unique(ends).tolist():
        rows = torch.nonzero(ends == end)[:, 0]
        g = group[rows]
        logits = prompt_logits.index_select(0, g)
        if end - 1 > first + 1:  # response tokens to run, after the shared prompt
            cache = DynamicCache()
            for i, layer in enumerate(prompt_cache.layers):
                cache.update(layer.keys.index_select(0, g), layer.values.index_select(0, g), i)
            logits = torch.cat([logits, model(tokens[rows, first + 1:end - 1], cache=cache)], dim=1)
            n_tokens += len(rows) * (end - 2 - first)
        chunk = tokens[rows, :end]
        logprobs = logprobs.index_copy(0, rows, F.pad(_picked(logits, chunk, first, temperature), (first, T - end)))
    return logprobs, n_tokens


def _picked(logits: torch.Tensor, chunk: torch.Tensor, first: int, temperature: float) -> torch.Tensor:
    """(..., b, end - 1 - first) log-probabilities of chunk's tokens first + 1.. under logits of positions first.."""
    logits = logits.float() if temperature == 1.0 else logits.float() / temperature
    return F.log_softmax(logits, dim=-1).gather(-1, chunk[..., first + 1:, None])[..., 0]


def next_token_loss(model: nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Mean cross-entropy over the masked target tokens, and the number of tokens run through the model."""
    logprobs, n_tokens = token_logprobs(model, tokens, loss_mask)
    return -logprobs.sum() / loss_mask[:, 1:].sum(), n_tokens


def padded_next_token_loss(model: nn.Module, tokens: torch.Tensor, loss_mask: torch.Tensor,
                           first: int) -> tuple[torch.Tensor, int]:
    """`next_token_loss` in one forward pass of the whole padded batch, with no host synchronisation.

    `first`: the position whose logits predict the first target (the prompt length - 1; no target before it).
    The tensor shapes depend only on the batch's, so the step can be compiled or captured as a CUDA graph, and
    nothing waits for the device: what `next_token_loss` saves by grouping rows by length it pays in host
    syncs (it reads the lengths), which on a GPU cost more than the padding. The same loss up to float rounding.
    """
    logits = model(tokens[:, :-1], logits_from=first)  # positions first.. predict tokens first + 1..
    return padded_loss(logits, tokens, loss_mask, first), tokens.shape[0] * (tokens.shape[1] - 1)


def padded_loss(logits: torch.Tensor, tokens: torch.Tensor, loss_mask: torch.Tensor, first: int) -> torch.Tensor:
    """Mean cross-entropy of the masked targets of (..., B, T) `tokens` under the logits of positions first..,
    one per leading index: a 0-dim loss for one batch, (N,) for N runs' batches (`training.packed`)."""
    mask = loss_mask[..., first + 1:]
    return -(_picked(logits, tokens, first, 1.0) * mask).sum(dim=(-2, -1)) / mask.sum(dim=(-2, -1))


class LossTally:
    """The running sum of a stage's losses, kept on the device (adding one waits for nothing), and the first
    step whose loss was not finite; read at each evaluation and checkpoint."""

    def __init__(self, device: torch.device, total: float = 0.0, steps: int = 0):
        self.total = torch.tensor(total, dtype=torch.float32, device=device)
        self.steps = steps
        self._bad_step = torch.tensor(-1.0, device=device)  # the first non-finite loss, and its step
        self._bad_loss = torch.tensor(0.0, device=device)

    def add(self, loss: torch.Tensor, step: int) -> None:
        """Count `loss` (a 0-dim tensor, detached) as step `step`'s."""
        loss = loss.detach().float()
        self.total += loss
        self.steps += 1
        first = (self._bad_step < 0) & ~torch.isfinite(loss)
        self._bad_step = torch.where(first, float(step), self._bad_step)  # a Python number: no copy to the device
        self._bad_loss = torch.where(first, loss, self._bad_loss)

    def mean(self) -> float:
        return self.total.item() / self.steps

    def reset(self) -> None:
        self.total.zero_()
        self.steps = 0

    def check(self, run_dir: Path) -> None:
        """Diverged, naming the step, if a loss counted so far was NaN or infinite (the checkpoints so far are
        kept: every checkpoint is written after this check)."""
        step = int(self._bad_step)
        if step >= 0:
            check_finite_loss(self._bad_loss.item(), step, run_dir)


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
