"""Accuracy and length of a model's answers, greedy and sampled: the metrics every stage reports."""

from dataclasses import dataclass

import torch
from torch import nn

from rlntp.generation import generate
from rlntp.tasks.parity import ParityTask, output_lengths


@dataclass(frozen=True)
class DecodeStats:
    """Accuracy and length of one decoding mode over a set of fresh inputs."""

    acc: float
    """fraction of answers equal to the parity"""
    len_median: float
    """median output length (tokens before EOS; d + 1 when there is no EOS)"""
    len_mean: float
    long_frac: float
    """fraction of outputs of length d (the long, chain-of-thought length)"""
    len_hist: list[int]
    """counts of output lengths 0 .. d + 1 (d + 1: no EOS within the budget)"""


def decode_stats(task: ParityTask, x: torch.Tensor, outputs: torch.Tensor) -> DecodeStats:
    """Statistics of `outputs` generated for inputs `x`."""
    lengths = output_lengths(outputs, task.max_new_tokens)
    return DecodeStats(
        acc=task.is_correct(x, outputs).float().mean().item(),
        len_median=lengths.float().quantile(0.5).item(),
        len_mean=lengths.float().mean().item(),
        long_frac=(lengths == task.long_len).float().mean().item(),
        len_hist=torch.bincount(lengths, minlength=task.max_new_tokens + 1).tolist(),
    )


@torch.no_grad()
def evaluate(model: nn.Module, task: ParityTask, samples: int, generator: torch.Generator,
             temperature: float = 1.0, batch_size: int = 2560) -> dict[str, float | list[int]]:
    """Greedy and temperature-`temperature` decoding on `samples` fresh inputs, as `eval/...` metrics.

    The model is put in eval mode and restored to its previous mode afterwards.
    """
    was_training = model.training
    model.eval()
    xs, greedy, sampled = [], [], []
    for start in range(0, samples, batch_size):
        x = task.sample_inputs(min(batch_size, samples - start), generator)
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
