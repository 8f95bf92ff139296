"""The optimizer every stage uses."""

import torch
from torch import nn


def make_adam(model: nn.Module, lr: float, device: torch.device) -> torch.optim.Optimizer:
    """Adam (paper App. B.1), fused into one kernel per step where PyTorch has one (CPU, CUDA)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=device.type in ("cpu", "cuda"))
