"""Parity of d bits as a mixture of long, medium and short sequences (paper §2, App. C.2, Fig. 1, 14)."""

from dataclasses import dataclass

import torch

from rlntp.errors import check

ZERO, ONE, EOS = 0, 1, 2
TOKEN_NAMES = ("0", "1", "EOS")
LONG, MEDIUM, SHORT = 0, 1, 2
"""Component ids of the mixture, as stored in `Sequences.kinds`."""


@dataclass(frozen=True)
class Sequences:
    """A batch of training sequences, right-padded with EOS to the context length."""

    tokens: torch.Tensor
    """(n, 2d + 1) token ids: inputs, outputs, EOS, then EOS padding"""
    loss_mask: torch.Tensor
    """(n, 2d + 1) bool, True where the token is a next-token target: the outputs and the first EOS"""
    lengths: torch.Tensor
    """(n,) output length: number of tokens between the inputs and the first EOS"""
    kinds: torch.Tensor
    """(n,) mixture component of each row: LONG, MEDIUM or SHORT"""


class ParityTask:
    """Parity of d bits: `x_1 .. x_d  outputs  EOS`, with b_i = x_1 xor .. xor x_i.

    Example, d = 4, x = 1 0 1 1, so the prefix parities are b = 1 1 0 1:

        long   (probability p_cot):     1 0 1 1  1 1 0 1  EOS    (b_1 .. b_d)
        medium (probability p_medium):  1 0 1 1  1 0 1  EOS      (b_i for odd i, and b_d)
        short  (the rest):              1 0 1 1  1  EOS          (b_d only)

    Token ids are 0 -> `0`, 1 -> `1`, 2 -> `EOS`. Only the outputs and the first EOS are next-token
    targets; the input bits are uniform noise and never trained on. A generation is answered by the
    token right before its first EOS; one without EOS within d + 1 tokens is wrong.
    """

    vocab_size = 3
    eos_id = EOS

    def __init__(self, d: int, p_cot: float, p_medium: float = 0.0):
        check(isinstance(d, int) and d >= 2, f"d must be an integer >= 2, got {d!r}")
        check(0.0 <= p_cot <= 1.0, f"p_cot must be in [0, 1], got {p_cot}")
        check(0.0 <= p_medium <= 1.0, f"p_medium must be in [0, 1], got {p_medium}")
        check(p_cot + p_medium <= 1.0, f"p_cot + p_medium must be at most 1, got {p_cot} + {p_medium}")
        self.d, self.p_cot, self.p_medium = d, p_cot, p_medium
        # b_i for odd i (1-based), then b_d if d is even: 0-based indices into the prefix parities.
        self.medium_indices = list(range(0, d, 2)) + ([d - 1] if d % 2 == 0 else [])

    @property
    def prompt_len(self) -> int:
        return self.d

    @property
    def max_new_tokens(self) -> int:
        """Decoding budget: the longest output plus its EOS."""
        return self.d + 1

    @property
    def context_len(self) -> int:
        return 2 * self.d + 1

    @property
    def long_len(self) -> int:
        return self.d

    @property
    def medium_len(self) -> int:
        return len(self.medium_indices)

    def sample_inputs(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, d) uniform bits, on the generator's device."""
        return torch.randint(0, 2, (n, self.d), generator=generator, device=generator.device)

    def outputs(self, x: torch.Tensor, kind: int) -> torch.Tensor:
        """(n, d + 1) outputs of one mixture component for inputs x, EOS-terminated and EOS-padded."""
        b = prefix_parities(x)
        if kind == LONG:
            body = b
        elif kind == MEDIUM:
            body = b[:, self.medium_indices]
        else:
            body = b[:, -1:]
        out = torch.full((x.shape[0], self.d + 1), EOS, dtype=torch.long, device=x.device)
        out[:, : body.shape[1]] = body
        return out

    def sample(self, n: int, generator: torch.Generator) -> Sequences:
        """n fresh sequences of the mixture D(d, p_cot, p_medium)."""
        x = self.sample_inputs(n, generator)
        u = torch.rand(n, generator=generator, device=generator.device)
        kinds = torch.full((n,), SHORT, dtype=torch.long, device=x.device)
        kinds[u < self.p_cot + self.p_medium] = MEDIUM
        kinds[u < self.p_cot] = LONG
        outputs = self.outputs(x, SHORT)
        for kind in (LONG, MEDIUM):
            outputs = torch.where((kinds == kind)[:, None], self.outputs(x, kind), outputs)
        lengths = output_lengths(outputs, self.max_new_tokens)
        tokens = torch.cat([x, outputs], dim=1)
        position = torch.arange(tokens.shape[1], device=x.device)
        loss_mask = (position >= self.d) & (position <= self.d + lengths[:, None])
        return Sequences(tokens=tokens, loss_mask=loss_mask, lengths=lengths, kinds=kinds)

    def is_correct(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the token before the first EOS is the parity of x (end-to-end correctness)."""
        return answers(outputs) == x.sum(dim=1) % 2

    def is_valid_cot(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the whole output is this input's long, medium or short sequence."""
        outputs = _pad_with_eos(outputs, self.d + 1)
        valid = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for kind in (LONG, MEDIUM, SHORT):
            valid |= (outputs == self.outputs(x, kind)).all(dim=1)
        return valid


def prefix_parities(x: torch.Tensor) -> torch.Tensor:
    """(n, d) b_i = x_1 xor .. xor x_i."""
    return torch.cumsum(x, dim=1) % 2


def output_lengths(outputs: torch.Tensor, no_eos_length: int | None = None) -> torch.Tensor:
    """(n,) number of tokens before the first EOS; `no_eos_length` (default: the width) if none."""
    is_eos = outputs == EOS
    first = torch.argmax(is_eos.int(), dim=1)
    none = outputs.shape[1] if no_eos_length is None else no_eos_length
    return torch.where(is_eos.any(dim=1), first, torch.full_like(first, none))


def answers(outputs: torch.Tensor) -> torch.Tensor:
    """(n,) the token right before the first EOS, or -1 if there is no EOS or it comes first."""
    lengths = output_lengths(outputs)
    has_answer = (lengths > 0) & (lengths < outputs.shape[1])
    last = outputs.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]
    return torch.where(has_answer, last, torch.full_like(last, -1))


def _pad_with_eos(outputs: torch.Tensor, width: int) -> torch.Tensor:
    """Right-pad (or keep) outputs to `width` columns with EOS, and EOS after the first EOS."""
    n, w = outputs.shape
    if w < width:
        outputs = torch.cat([outputs, outputs.new_full((n, width - w), EOS)], dim=1)
    after_eos = torch.cumsum((outputs == EOS).int(), dim=1) > 0
    return outputs.masked_fill(after_eos, EOS)[:, :width]


def format_tokens(tokens: list[int]) -> str:
    """`0 1 1 EOS`: token ids as the names used in the paper, separated by single spaces."""
    return " ".join(TOKEN_NAMES[t] for t in tokens)
