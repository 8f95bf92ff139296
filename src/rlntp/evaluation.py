"""Accuracy and length of a model's answers, greedy and sampled: the metrics every stage reports."""

from dataclasses import dataclass

import torch
from torch import nn

from rlntp.generation import DECODERS
from rlntp.tasks.base import Task


@dataclass(frozen=True)
class DecodeStats:
    """Accuracy and length of one decoding mode over a set of test prompts."""

    acc: float
    """fraction of correct answers (the task's end-to-end check): `correct` / `total` as a float32 mean (for plots;
    a threshold reads the counts: `rlntp.exact`)"""
    correct: int
    """correct answers"""
    total: int
    """prompts evaluated"""
    len_median: float
    """median output length (tokens before EOS; the decoding budget when there is no EOS)"""
    len_mean: float
    long_frac: float
    """fraction of outputs of the long, chain-of-thought length"""
    no_eos_frac: float
    """fraction of outputs with no EOS within the decoding budget (scored wrong)"""
    len_hist: list[int]
    """counts of output lengths 0 .. max_new_tokens (the last: no EOS within the budget)"""


def decode_stats(task: Task, prompts: torch.Tensor, outputs: torch.Tensor) -> DecodeStats:
    """Statistics of `outputs` generated for `prompts`."""
    lengths = task.output_lengths(outputs)
    correct = task.is_correct(prompts, outputs)
    return DecodeStats(
        acc=correct.float().mean().item(),
        correct=int(correct.sum().item()),
        total=len(correct),
        len_median=lengths.float().quantile(0.5).item(),
        len_mean=lengths.float().mean().item(),
        long_frac=(lengths == task.long_len).float().mean().item(),
        no_eos_frac=(lengths == task.max_new_tokens).float().mean().item(),
        len_hist=torch.bincount(lengths, minlength=task.max_new_tokens + 1).tolist(),
    )


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, samples: int, generator: torch.Generator, temperature: float = 1.0,
             batch_size: int = 2560, test_prompts: torch.Tensor | None = None,
             decode: str = "shared") -> dict[str, float | list[int]]:
    """Greedy and temperature-`temperature` decoding of `samples` prompts, as `eval/...` metrics.

    The prompts are the first `samples` rows of `test_prompts` (a dataset's test split), or fresh
    ones drawn from `generator` when there is none. The model is put in eval mode and restored to
    its previous mode afterwards. `decode`: the decoder (`rlntp.generation.DECODERS`).
    """
    generate = DECODERS[decode]
    was_training = model.training
    model.eval()
    if test_prompts is not None:
        samples = min(samples, len(test_prompts))
    xs, greedy, sampled = [], [], []
    for start in range(0, samples, batch_size):
        n = min(batch_size, samples - start)
        x = task.sample_prompts(n, generator) if test_prompts is None else test_prompts[start : start + n]
        xs.append(x)
        greedy.append(generate(model, x, task.max_new_tokens, task.eos_id))
        sampled.append(generate(model, x, task.max_new_tokens, task.eos_id, temperature, generator))
    model.train(was_training)
    x = torch.cat(xs)
    metrics: dict[str, float | list[int]] = {}
    for mode, outputs in (("greedy", torch.cat(greedy)), ("sampled", torch.cat(sampled))):
        stats = decode_stats(task, x, outputs)
        metrics |= {f"eval/{mode}_{k}": v for k, v in vars(stats).items()}
    return metrics
