"""What every task is: a mixture of long (chain-of-thought) and short sequences over a small vocabulary.

The stages (pre-training, rollouts, rewards, evaluation, plots) use only this interface, so a new
task is one `Task` subclass: in your own file (`--task FILE.py:CLASS`, docs/tasks.md) or, built in, one
new module listed in `rlntp.tasks.TASKS`.
"""

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

LONG, MEDIUM, SHORT = 0, 1, 2
"""Component ids of a mixture, as stored in `Sequences.kinds`."""


@dataclass(frozen=True)
class Sequences:
    """A batch of training sequences, right-padded with EOS to the context length."""

    tokens: torch.Tensor
    """(n, context_len) token ids: prompt, output, EOS, then EOS padding"""
    loss_mask: torch.Tensor
    """(n, context_len) bool, True where the token is a next-token target: the output and its EOS"""
    lengths: torch.Tensor
    """(n,) output length: number of tokens between the prompt and the first EOS"""
    kinds: torch.Tensor
    """(n,) mixture component of each row: LONG, MEDIUM or SHORT"""


class Task(ABC):
    """A task: prompts of a fixed length, EOS-terminated outputs, and checks of those outputs.

    Subclasses set `name`, `vocab` (token names; a token's id is its index) and `eos_id`, and
    implement the abstract members. Outputs are always (n, width) tensors of token ids, EOS after
    the first EOS; an output without EOS within the decoding budget is wrong.
    """

    name: str
    vocab: tuple[str, ...]
    eos_id: int
    guess_acc: float
    """accuracy of a short answer that is a guess (parity 1/2, multiplication ~0): chance level"""

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @property
    @abstractmethod
    def prompt_len(self) -> int:
        """Tokens of every prompt (prompts have one length, so batches need no padding)."""

    @property
    @abstractmethod
    def long_len(self) -> int:
        """Output length (tokens before EOS) of the long, chain-of-thought sequence."""

    @property
    def max_new_tokens(self) -> int:
        """Decoding budget: the longest output plus its EOS."""
        return self.long_len + 1

    @property
    def context_len(self) -> int:
        return self.prompt_len + self.max_new_tokens

    @property
    @abstractmethod
    def title(self) -> str:
        """A short description for figure titles and tables, e.g. `parity d = 12`."""

    @property
    @abstractmethod
    def params(self) -> dict:
        """The options that define this mixture (`task`, its size, `p_cot`, ...), as a dataset manifest records them."""

    @property
    def distinct_inputs(self) -> int | None:
        """How many distinct prompts `sample_prompts` can draw (parity: 2^d), or None where the task cannot say.

        Set beside the samples pre-training sees, it tells whether a run may have memorised its inputs (more samples
        than inputs) or must generalise to inputs it never saw: a claim about what training generalizes to is judged
        only where samples <= distinct inputs (`experiments.claims`). Override it in a task of your own to have
        such claims judged on it.
        """
        return None

    @abstractmethod
    def sample_prompts(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """(n, prompt_len) fresh prompts, on the generator's device."""

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Sequences:
        """n fresh sequences of the mixture."""

    @abstractmethod
    def is_correct(self, prompts: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the output ends with the right answer, then EOS (end-to-end correctness)."""

    @abstractmethod
    def is_valid_cot(self, prompts: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) bool: the whole output is one of this prompt's mixture sequences."""

    @abstractmethod
    def to_text(self, tokens: list[int]) -> str:
        """One sequence (prompt and output, up to its EOS) as text, as `rlntp sample` prints it."""

    def output_lengths(self, outputs: torch.Tensor) -> torch.Tensor:
        """(n,) tokens before the first EOS; `max_new_tokens` where there is none (no EOS in the budget)."""
        return output_lengths(outputs, self.eos_id, self.max_new_tokens)

    def sequences(self, prompts: torch.Tensor, outputs: torch.Tensor, kinds: torch.Tensor) -> Sequences:
        """Training sequences from prompts and EOS-padded outputs of width max_new_tokens."""
        lengths = output_lengths(outputs, self.eos_id, self.max_new_tokens)
        tokens = torch.cat([prompts, outputs], dim=1)
        loss_mask = output_mask(tokens.shape[1], self.prompt_len, lengths)
        return Sequences(tokens=tokens, loss_mask=loss_mask, lengths=lengths, kinds=kinds)

    def same_output(self, outputs: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
        """(n,) bool: `outputs` equal the EOS-padded `expected` (n, max_new_tokens) up to and including EOS."""
        return (pad_with_eos(outputs, self.max_new_tokens, self.eos_id) == expected).all(dim=1)

    def tokenizer(self):
        """This vocabulary as a Hugging Face tokenizer (word level), saved beside every checkpoint.

        Text is split on whitespace and on the task's tokens, so `1 2||8` reads as `1 2 || 8`; decoding
        joins tokens with single spaces (`to_text` gives the task's exact text format). A word outside the
        vocabulary reads as EOS: the tasks' vocabularies are closed, so there is no unknown token.
        """
        from tokenizers import Regex, Tokenizer, models, pre_tokenizers
        from transformers import PreTrainedTokenizerFast

        eos = self.vocab[self.eos_id]
        words = sorted(self.vocab, key=len, reverse=True)
        tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(self.vocab)}, unk_token=eos))
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.WhitespaceSplit(),
            pre_tokenizers.Split(Regex("|".join(re.escape(w) for w in words)), behavior="isolated"),
        ])
        return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=eos, pad_token=eos, bos_token=eos)


def output_mask(width: int, prompt_len: int, lengths: torch.Tensor) -> torch.Tensor:
    """(n, width) True on the output tokens and the first EOS: positions prompt_len .. prompt_len + length."""
    position = torch.arange(width, device=lengths.device)
    return (position >= prompt_len) & (position <= prompt_len + lengths[:, None])


def output_lengths(outputs: torch.Tensor, eos_id: int, no_eos_length: int | None = None) -> torch.Tensor:
    """(n,) number of tokens before the first EOS; `no_eos_length` (default: the width) if none."""
    is_eos = outputs == eos_id
    first = torch.argmax(is_eos.int(), dim=1)
    none = outputs.shape[1] if no_eos_length is None else no_eos_length
    return torch.where(is_eos.any(dim=1), first, torch.full_like(first, none))


def pad_with_eos(outputs: torch.Tensor, width: int, eos_id: int) -> torch.Tensor:
    """Right-pad (or cut) outputs to `width` columns with EOS, and EOS after the first EOS."""
    n, w = outputs.shape
    if w < width:
        outputs = torch.cat([outputs, outputs.new_full((n, width - w), eos_id)], dim=1)
    after_eos = torch.cumsum((outputs == eos_id).int(), dim=1) > 0
    return outputs.masked_fill(after_eos, eos_id)[:, :width]
