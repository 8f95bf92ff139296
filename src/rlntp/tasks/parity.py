"""Parity of d bits as a mixture of long, medium and short sequences (paper §2, App. C.2, Fig. 1, 14)."""

import torch

from rlntp.errors import check
from rlntp.tasks.base import LONG, MEDIUM, SHORT, Sequences, Task, output_lengths

ZERO, ONE, EOS = 0, 1, 2
TOKEN_NAMES = ("0", "1", "EOS")


MAX_D = 100_000
"""Beyond this the sequences alone outgrow any machine's memory for attention (the paper uses d <= 50)."""

class ParityTask(Task):
    """Parity of d bits: `x_1 .. x_d  outputs  EOS`, with b_i = x_1 xor .. xor x_i.

    Example, d = 4, x = 1 0 1 1, so the prefix parities are b = 1 1 0 1:

        long   (probability p_cot):     1 0 1 1  1 1 0 1  EOS    (b_1 .. b_d)
        medium (probability p_medium):  1 0 1 1  1 0 1  EOS      (b_i for odd i, and b_d)
        short  (the rest):              1 0 1 1  1  EOS          (b_d only)

    Token ids are 0 -> `0`, 1 -> `1`, 2 -> `EOS`. Only the outputs and the first EOS are next-token
    targets; the input bits are uniform noise and never trained on. A generation is answered by the
    token right before its first EOS; one without EOS within d + 1 tokens is wrong.
    """

    name = "parity"
    vocab = TOKEN_NAMES
    eos_id = EOS
    guess_acc = 0.5

    def __init__(self, d: int, p_cot: float, p_medium: float = 0.0):
        check(isinstance(d, int) and d >= 2, f"d must be an integer >= 2, got {d!r}")
        check(d <= MAX_D, f"d must be at most {MAX_D:,} (a sequence is 2d + 1 tokens), got {d:,}")
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
    def long_len(self) -> int:
        return self.d

    @property
    def title(self) -> str:
        return f"parity d = {self.d}"

    @property
    def params(self) -> dict:
        return {"task": self.name, "d": self.d, "p_cot": self.p_cot, "p_medium": self.p_medium}

    @property
    def distinct_inputs(self) -> int:
        """2^d: every input is d uniform bits (the medium and short sequences have the same inputs)."""
        return 2**self.d

    @property
    def medium_len(self) -> int:
        return len(self.medium_indices)

    def sample_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
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
        x = self.sample_prompts(n, generator)
        return self.mixture(x, torch.rand(n, generator=generator, device=generator.device))

    def mixture(self, x: torch.Tensor, u: torch.Tensor) -> Sequences:
        """The sequences of inputs x (n, d), each long where u < p_cot, medium where u < p_cot + p_medium and short
        elsewhere, for u (n,) uniform in [0, 1)."""
        short = torch.full((len(x),), SHORT, dtype=torch.long, device=x.device)
        kinds = torch.where(u < self.p_cot, LONG, torch.where(u < self.p_cot + self.p_medium, MEDIUM, short))
        outputs = self.outputs(x, SHORT)
        for kind in (LONG, MEDIUM):
            outputs = torch.where((kinds == kind)[:, None], self.outputs(x, kind), outputs)
        return self.sequences(x, outputs, kinds)

    def is_correct(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the token before the first EOS is the parity of x (end-to-end correctness)."""
        return answers(outputs) == x.sum(dim=1) % 2

    def is_valid_cot(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the whole output is this input's long, medium or short sequence."""
        valid = torch.zeros(x.shape[0], dtype=torch.bool, device=x.device)
        for kind in (LONG, MEDIUM, SHORT):
            valid |= self.same_output(outputs, self.outputs(x, kind))
        return valid

    def to_text(self, tokens: list[int]) -> str:
        """`0 1 1 EOS`: token names separated by single spaces, EOS included."""
        return " ".join(TOKEN_NAMES[t] for t in tokens)


def prefix_parities(x: torch.Tensor) -> torch.Tensor:
    """(n, d) b_i = x_1 xor .. xor x_i."""
    return torch.cumsum(x, dim=1) % 2


def answers(outputs: torch.Tensor) -> torch.Tensor:
    """(n,) the token right before the first EOS, or -1 if there is no EOS or it comes first."""
    lengths = output_lengths(outputs, EOS)
    has_answer = (lengths > 0) & (lengths < outputs.shape[1])
    last = outputs.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]
    return torch.where(has_answer, last, torch.full_like(last, -1))
