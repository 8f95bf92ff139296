"""Rollouts: sampled responses to fresh inputs, with their rewards, as typed records."""

from dataclasses import dataclass

import torch
from torch import nn

from rlntp.generation import DECODERS
from rlntp.tasks.base import Task, output_mask
from rlntp.training.rewards import compute_reward


@dataclass(frozen=True)
class Rollouts:
    """N = prompts x rollouts_per_prompt responses; rows of one prompt are adjacent."""

    inputs: torch.Tensor
    """(N, prompt_len) prompts (each repeated rollouts_per_prompt times)"""
    outputs: torch.Tensor
    """(N, max_new_tokens) response tokens, EOS after the first EOS"""
    lengths: torch.Tensor
    """(N,) tokens before the first EOS (max_new_tokens: no EOS)"""
    is_long: torch.Tensor
    """(N,) bool: the response has the long, chain-of-thought length"""
    rewards: torch.Tensor
    """(N,) float rewards"""
    components: dict[str, torch.Tensor]
    """reward components, each (N,)"""
    group_size: int
    """rollouts per prompt"""

    @property
    def tokens(self) -> torch.Tensor:
        """(N, prompt_len + max_new_tokens) prompt and response, as the model reads them."""
        return torch.cat([self.inputs, self.outputs], dim=1)

    @property
    def response_mask(self) -> torch.Tensor:
        """(N, prompt_len + max_new_tokens) True on response tokens up to and including the first EOS."""
        return output_mask(self.inputs.shape[1] + self.outputs.shape[1], self.inputs.shape[1], self.lengths)

    def filter(self, keep: torch.Tensor) -> "Rollouts":
        """The rows where `keep` is True (group structure is not kept)."""
        return Rollouts(self.inputs[keep], self.outputs[keep], self.lengths[keep], self.is_long[keep],
                        self.rewards[keep], {k: v[keep] for k, v in self.components.items()}, group_size=1)


@torch.no_grad()
def sample_rollouts(model: nn.Module, task: Task, prompts: torch.Tensor, rollouts_per_prompt: int,
                    temperature: float, reward: str, generator: torch.Generator,
                    length_penalty: float = 0.4, decode: str = "shared") -> Rollouts:
    """Sample `rollouts_per_prompt` responses to each row of `prompts`, in eval mode.

    Rollouts are generated with the model in eval mode (no dropout; paper App. B.2 found this
    necessary), and the model's previous mode is restored.
    """
    was_training = model.training
    model.eval()
    x = prompts.repeat_interleave(rollouts_per_prompt, dim=0)
    outputs = DECODERS[decode](model, prompts, task.max_new_tokens, task.eos_id, temperature, generator,
                               repeats=rollouts_per_prompt)
    model.train(was_training)
    r = compute_reward(reward, task, x, outputs, length_penalty)
    lengths = task.output_lengths(outputs)
    return Rollouts(inputs=x, outputs=outputs, lengths=lengths, is_long=lengths == task.long_len, rewards=r.value,
                    components=r.components, group_size=rollouts_per_prompt)
