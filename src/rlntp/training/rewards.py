"""Outcome rewards of responses, for any task (paper §2 "Post-training", App. B.2, C.2 eq. 12).

Each reward returns its value and the components it was built from, for logging.
"""

from dataclasses import dataclass

import torch

from rlntp.errors import check_choice
from rlntp.tasks.base import Task

REWARDS = ("e2e", "cot", "length")


@dataclass(frozen=True)
class Reward:
    """Per-response rewards and their components, each (N,)."""

    value: torch.Tensor
    components: dict[str, torch.Tensor]


def end_to_end(task: Task, x: torch.Tensor, outputs: torch.Tensor) -> Reward:
    """1 if the answer before EOS is right (parity: the last token; multiplication: the product after ####), else 0."""
    correct = task.is_correct(x, outputs).float()
    return Reward(correct, {"correct": correct})


def chain_of_thought(task: Task, x: torch.Tensor, outputs: torch.Tensor) -> Reward:
    """1 if the whole output is one of this input's mixture sequences (long, medium or short), else 0."""
    valid = task.is_valid_cot(x, outputs).float()
    return Reward(valid, {"valid_cot": valid, "correct": task.is_correct(x, outputs).float()})


def length_penalized(task: Task, x: torch.Tensor, outputs: torch.Tensor, penalty: float) -> Reward:
    """End-to-end reward minus penalty * (length / long length) (App. C.2: parity, length / d, lambda = 0.4)."""
    base = end_to_end(task, x, outputs)
    length_term = penalty * task.output_lengths(outputs).float() / task.long_len
    return Reward(base.value - length_term, base.components | {"length_penalty": length_term})


def compute_reward(name: str, task: Task, x: torch.Tensor, outputs: torch.Tensor,
                   length_penalty: float = 0.4) -> Reward:
    """The reward called `name` (one of REWARDS) of `outputs` for inputs `x`."""
    check_choice("reward", name, REWARDS)
    if name == "e2e":
        return end_to_end(task, x, outputs)
    if name == "cot":
        return chain_of_thought(task, x, outputs)
    return length_penalized(task, x, outputs, length_penalty)
