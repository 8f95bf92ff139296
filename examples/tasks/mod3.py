"""A task of your own, not in the paper: the sum of d ternary digits modulo 3, its chain of thought the running sums.

    rlntp sample --task examples/tasks/mod3.py:SumMod3Task --d 6 --p-cot 0.25
    rlntp pretrain --task examples/tasks/mod3.py:SumMod3Task --d 8 --p-cot 0.25 --steps 1000 --out runs/mod3

Example, d = 4, x = 2 1 0 2, so the running sums modulo 3 are s = 2 0 0 2:

    long  (probability p_cot):  2 1 0 2 | 2 0 0 2 EOS
    short (the rest):           2 1 0 2 | 2 EOS

It is parity's three-valued cousin: the answer depends on every digit, so predicting it directly is as hard
for a transformer as parity, while each step of the long form is a sum of two small numbers. A guess is right
one time in three. Everything rlntp needs of a task is here (docs/tasks.md); nothing in rlntp names it.
"""

import torch

from rlntp.errors import check
from rlntp.tasks.base import LONG, SHORT, Sequences, Task, output_lengths

EOS = 3


class SumMod3Task(Task):
    """d digits in {0, 1, 2}; outputs the running sums modulo 3 (long) or only the last one (short), then EOS."""

    name = "mod3"
    vocab = ("0", "1", "2", "EOS")
    eos_id = EOS
    guess_acc = 1 / 3

    def __init__(self, d: int, p_cot: float):
        check(isinstance(d, int) and 2 <= d <= 1000, f"mod3: d must be an integer in [2, 1000], got {d!r}")
        check(0.0 <= p_cot <= 1.0, f"p_cot must be in [0, 1], got {p_cot}")
        self.d, self.p_cot = d, p_cot

    @property
    def prompt_len(self) -> int:
        return self.d

    @property
    def long_len(self) -> int:
        return self.d

    @property
    def title(self) -> str:
        return f"sum mod 3, d = {self.d}"

    @property
    def params(self) -> dict:
        return {"task": self.name, "d": self.d, "p_cot": self.p_cot}

    def sample_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 3, (n, self.d), generator=generator, device=generator.device)

    def outputs(self, x: torch.Tensor, kind: int) -> torch.Tensor:
        """(n, d + 1) the long or short output of inputs x, EOS-terminated and EOS-padded."""
        sums = torch.cumsum(x, dim=1) % 3
        body = sums if kind == LONG else sums[:, -1:]
        out = torch.full((x.shape[0], self.d + 1), EOS, dtype=torch.long, device=x.device)
        out[:, : body.shape[1]] = body
        return out

    def sample(self, n: int, generator: torch.Generator) -> Sequences:
        x = self.sample_prompts(n, generator)
        long = torch.rand(n, generator=generator, device=generator.device) < self.p_cot
        outputs = torch.where(long[:, None], self.outputs(x, LONG), self.outputs(x, SHORT))
        kinds = torch.where(long, LONG, SHORT)
        return self.sequences(x, outputs, kinds)

    def is_correct(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """The token right before the first EOS is the sum modulo 3."""
        lengths = output_lengths(outputs, EOS)
        answered = (lengths > 0) & (lengths < outputs.shape[1])
        last = outputs.gather(1, (lengths - 1).clamp(min=0)[:, None])[:, 0]
        return answered & (last == x.sum(dim=1) % 3)

    def is_valid_cot(self, x: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """The whole output is this input's long or short sequence."""
        return self.same_output(outputs, self.outputs(x, LONG)) | self.same_output(outputs, self.outputs(x, SHORT))

    def to_text(self, tokens: list[int]) -> str:
        return " ".join(self.vocab[t] for t in tokens)
