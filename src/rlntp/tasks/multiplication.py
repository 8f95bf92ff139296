"""n x n multiplication as a mixture of long (grade-school trace) and short sequences (paper §5.1, App. B.2).

The text format is the public one of Deng et al. (2024): every number least-significant digit
first, digits separated by spaces, the prompt ends with `||`.
"""

import numpy as np
import torch

from rlntp.errors import ConfigError, check
from rlntp.tasks.base import LONG, SHORT, Sequences, Task

DIGITS = tuple(str(i) for i in range(10))
TIMES, PLUS, OPEN, CLOSE, SEP, ANSWER, EOS = range(10, 17)
TOKEN_NAMES = (*DIGITS, "*", "+", "(", ")", "||", "####", "EOS")
MAX_DIGITS = 9
"""products of two 9-digit numbers still fit in int64"""


class MultiplicationTask(Task):
    """n x n multiplication: `a * b||` then the grade-school trace and `#### product`, or the product alone.

    Example, n = 3, 123 x 456 = 56,088 (numbers reversed; partial product i is digit_i(b) x a x 10^i,
    zero-padded to n + 1 + i digits; after partial products 1 .. n - 2 comes their running sum):

        long  (probability p_cot):  3 2 1 * 6 5 4||8 3 7 0 + 0 5 1 6 0 ( 8 8 8 6 0 ) + 0 0 2 9 4 0 #### 8 8 0 6 5 0
        short (the rest):           3 2 1 * 6 5 4||#### 8 8 0 6 5 0

    Tokens are the words of that text: the digits, `*`, `+`, `(`, `)`, `||`, `####` and EOS after
    the output. The prompt (`3 2 1 * 6 5 4||`, 2n + 2 tokens) is never a target; the output and its
    EOS are. A response is correct when the tokens between its last `####` and its EOS are exactly
    the product's 2n digits (the paper's "complete number match").
    """

    name = "mult"
    vocab = TOKEN_NAMES
    eos_id = EOS
    guess_acc = 0.0

    def __init__(self, digits: int, p_cot: float):
        check(isinstance(digits, int) and 2 <= digits <= MAX_DIGITS,
              f"digits must be an integer in [2, {MAX_DIGITS}], got {digits!r}")
        check(0.0 <= p_cot <= 1.0, f"p_cot must be in [0, 1], got {p_cot}")
        self.n, self.p_cot = digits, p_cot
        self._segments = long_segments(digits)

    @property
    def prompt_len(self) -> int:
        return 2 * self.n + 2

    @property
    def long_len(self) -> int:
        return sum(width for _, _, width in self._segments)

    @property
    def short_len(self) -> int:
        return 1 + 2 * self.n

    @property
    def title(self) -> str:
        return f"{self.n}x{self.n} multiplication"

    @property
    def params(self) -> dict:
        return {"task": self.name, "digits": self.n, "p_cot": self.p_cot}

    @property
    def operand_range(self) -> tuple[int, int]:
        """[low, high): the n-digit numbers (no leading zero)."""
        return 10 ** (self.n - 1), 10**self.n

    @property
    def distinct_inputs(self) -> int:
        """The ordered operand pairs `sample_operands` draws: (9 x 10^(n-1))^2 (n digits, no leading zero)."""
        low, high = self.operand_range
        return (high - low) ** 2

    # --- sequences from operands ----------------------------------------------------------------

    def prompts(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """(k, 2n + 2) `a * b||` for operand tensors a, b."""
        k = a.shape[0]
        times = torch.full((k, 1), TIMES, dtype=torch.long, device=a.device)
        sep = torch.full((k, 1), SEP, dtype=torch.long, device=a.device)
        return torch.cat([reversed_digits(a, self.n), times, reversed_digits(b, self.n), sep], dim=1)

    def outputs(self, a: torch.Tensor, b: torch.Tensor, long: torch.Tensor) -> torch.Tensor:
        """(k, max_new_tokens) the long (where `long`) or short output, EOS-terminated and EOS-padded."""
        k, n = a.shape[0], self.n
        out = torch.full((k, self.max_new_tokens), EOS, dtype=torch.long, device=a.device)
        numbers = {"product": a * b}
        partial_sum = torch.zeros_like(a)
        for i, b_i in enumerate(reversed_digits(b, n).T):
            numbers[f"pp{i}"] = b_i * a * 10**i
            partial_sum = partial_sum + numbers[f"pp{i}"]
            numbers[f"sum{i}"] = partial_sum
        column = 0
        for token, number, width in self._segments:
            if number is None:
                out[:, column] = token
            else:
                out[:, column : column + width] = reversed_digits(numbers[number], width)
            column += width
        short = torch.full((k, self.max_new_tokens), EOS, dtype=torch.long, device=a.device)
        short[:, 0] = ANSWER
        short[:, 1 : 1 + 2 * n] = reversed_digits(numbers["product"], 2 * n)
        return torch.where(long[:, None], out, short)

    def encode(self, a: torch.Tensor, b: torch.Tensor, long: torch.Tensor) -> Sequences:
        """Training sequences of operand pairs, long where `long` (bool), short elsewhere."""
        kinds = torch.where(long, LONG, SHORT)
        return self.sequences(self.prompts(a, b), self.outputs(a, b, long), kinds)

    def operands(self, prompts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, b) read back from prompts."""
        n = self.n
        return from_reversed_digits(prompts[:, :n]), from_reversed_digits(prompts[:, n + 1 : 2 * n + 1])

    # --- the Task interface -----------------------------------------------------------------------

    def sample_operands(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        low, high = self.operand_range
        a = torch.randint(low, high, (n,), generator=generator, device=generator.device)
        b = torch.randint(low, high, (n,), generator=generator, device=generator.device)
        return a, b

    def sample_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, 2n + 2) prompts of uniform n-digit operand pairs."""
        return self.prompts(*self.sample_operands(n, generator))

    def sample(self, n: int, generator: torch.Generator) -> Sequences:
        """n fresh sequences: uniform operand pairs, each long with probability p_cot."""
        a, b = self.sample_operands(n, generator)
        long = torch.rand(n, generator=generator, device=generator.device) < self.p_cot
        return self.encode(a, b, long)

    def is_correct(self, prompts: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(k,) bool: `#### product EOS` ends the output (the product's 2n digits after the last ####)."""
        a, b = self.operands(prompts)
        width = 2 * self.n
        lengths = self.output_lengths(outputs)
        has_room = (lengths >= width + 1) & (lengths < self.max_new_tokens)
        start = (lengths - width - 1).clamp(min=0)
        columns = start[:, None] + torch.arange(width + 1, device=outputs.device)
        tail = outputs.gather(1, columns.clamp(max=outputs.shape[1] - 1))
        expected = torch.cat([torch.full_like(a, ANSWER)[:, None], reversed_digits(a * b, width)], dim=1)
        return has_room & (tail == expected).all(dim=1)

    def is_valid_cot(self, prompts: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(k,) bool: the whole output is this pair's long or short sequence."""
        a, b = self.operands(prompts)
        true, false = torch.ones_like(a, dtype=torch.bool), torch.zeros_like(a, dtype=torch.bool)
        return self.same_output(outputs, self.outputs(a, b, true)) | self.same_output(outputs, self.outputs(a, b, false))

    def to_text(self, tokens: list[int]) -> str:
        """The public text line: words separated by spaces, `||` glued to both neighbours, no EOS."""
        if EOS in tokens:
            tokens = tokens[: tokens.index(EOS)]
        return " ".join(TOKEN_NAMES[t] for t in tokens).replace(" || ", "||").replace(" ||", "||")

    def line(self, a: int, b: int, long: bool) -> str:
        """The text line of a x b."""
        seqs = self.encode(torch.tensor([a]), torch.tensor([b]), torch.tensor([long]))
        return self.to_text(seqs.tokens[0].tolist())

    def parse_line(self, line: str) -> tuple[int, int, bool]:
        """(a, b, long) of a public text line; ConfigError unless the line is exactly this task's format."""
        a, b, long = self.parse_prompt(line)
        if line != self.line(a, b, long):
            raise ConfigError(f"differs from the {'long' if long else 'short'} line of {a} x {b}: "
                              f"expected {self.line(a, b, long)!r}")
        return a, b, long

    def parse_prompt(self, line: str) -> tuple[int, int, bool]:
        """(a, b, long) from the prompt of a text line and whether a chain of thought follows it (not checked)."""
        words = line.replace("||", " || ").split()
        n = self.n
        if len(words) < 2 * n + 2 or words[2 * n + 1] != "||" or words[n] != "*" \
                or not all(w in DIGITS for w in words[:n] + words[n + 1 : 2 * n + 1]):
            raise ConfigError(f"not a {n}x{n} prompt `a * b||` with {n} digits on each side")
        a = int("".join(reversed(words[:n])))
        b = int("".join(reversed(words[n + 1 : 2 * n + 1])))
        low, high = self.operand_range
        if not (low <= a < high and low <= b < high):
            raise ConfigError(f"an operand has a leading zero ({a} x {b} is not {n}x{n})")
        return a, b, words[2 * n + 2 : 2 * n + 3] != ["####"]

    def parse_operands(self, text: str) -> tuple[int, int]:
        """`A,B` (most significant digit first) as an n-digit pair; ConfigError otherwise."""
        parts = text.split(",")
        n = self.n
        check(len(parts) == 2 and all(p.strip().isdigit() for p in parts),
              f"operands must be two numbers A,B, got {text!r}")
        a, b = (p.strip() for p in parts)
        for value in (a, b):
            check(len(value) == n and value[0] != "0",
                  f"operands must have {n} digits and no leading zero, got {value!r}")
        return int(a), int(b)



def long_segments(n: int) -> list[tuple[int, str | None, int]]:
    """The long output as (token, number, width) pieces: a constant token (number None) or a number's digits."""
    pieces: list[tuple[int, str | None, int]] = []
    for i in range(n):
        if i > 0:
            pieces.append((PLUS, None, 1))
        pieces.append((-1, f"pp{i}", n + 1 + i))
        if 1 <= i <= n - 2:
            pieces += [(OPEN, None, 1), (-1, f"sum{i}", n + 1 + i), (CLOSE, None, 1)]
    pieces += [(ANSWER, None, 1), (-1, "product", 2 * n)]
    return pieces


def reversed_digits(x: torch.Tensor, width: int) -> torch.Tensor:
    """(k, width) decimal digits of x, least significant first, zero-padded."""
    powers = 10 ** torch.arange(width, device=x.device, dtype=torch.long)
    return (x[:, None] // powers) % 10


def from_reversed_digits(digits: torch.Tensor) -> torch.Tensor:
    """(k,) the numbers whose least-significant-first digits are the rows of `digits`."""
    powers = 10 ** torch.arange(digits.shape[1], device=digits.device, dtype=torch.long)
    return (digits.long() * powers).sum(dim=1)


def draw_pairs(digits: int, count: int, seed: int) -> np.ndarray:
    """(count, 2) distinct n-digit operand pairs (a, b), in a seeded random order."""
    low, high = 10 ** (digits - 1), 10**digits
    span = high - low
    total = span * span
    check(count <= total, f"only {total:,} distinct {digits}x{digits} pairs exist; ask for at most that many "
                          f"in train + valid + test, got {count:,}")
    # Uniform draws with repeats dropped, in fixed-size chunks: the first k pairs are the same whatever
    # the count asked for, so the test split (drawn first) does not depend on the train size.
    rng = np.random.default_rng([seed, digits, 7])
    drawn = np.zeros(0, dtype=np.int64)
    while True:
        drawn = np.concatenate([drawn, rng.integers(0, total, size=1 << 16)])
        _, first = np.unique(drawn, return_index=True)
        if len(first) >= count:
            break
    index = drawn[np.sort(first)[:count]]
    return np.stack([low + index // span, low + index % span], axis=1)
