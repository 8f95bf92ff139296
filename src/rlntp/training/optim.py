"""The optimizers the stages use: Adam (paper App. B.1, parity) or AdamW with gradient clipping (App. B.2)."""

import torch
from torch import nn

from rlntp.errors import check, check_choice

OPTIMIZERS = ("adam", "adamw")


def make_optimizer(model: nn.Module, name: str, lr: float, device: torch.device, weight_decay: float = 0.0,
                   max_grad_norm: float | None = None) -> torch.optim.Optimizer:
    """Adam or AdamW, fused into one kernel per step where PyTorch has one (CPU, CUDA).

    With `max_grad_norm`, every `step()` first clips the global gradient norm to it (a step pre-hook,
    so the update functions of every stage stay `optimizer.step()`).
    """
    fused = device.type in ("cpu", "cuda")
    if name == "adamw":
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=fused)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=fused)
    if max_grad_norm is not None:
        params = [p for p in model.parameters() if p.requires_grad]

        def clip(*_) -> None:
            nn.utils.clip_grad_norm_(params, max_grad_norm)

        optimizer.register_step_pre_hook(clip)
    return optimizer


def check_optimizer(optimizer: str, lr: float, weight_decay: float, max_grad_norm: float | None) -> None:
    """Validate the optimizer options shared by the pre- and post-training configs."""
    check_choice("optimizer", optimizer, OPTIMIZERS)
    check(lr > 0, f"lr must be > 0, got {lr}")
    check(weight_decay >= 0, f"weight_decay must be >= 0, got {weight_decay}")
    check(weight_decay == 0 or optimizer == "adamw", f"weight_decay needs --optimizer adamw, got {optimizer}")
    check(max_grad_norm is None or max_grad_norm > 0, f"max_grad_norm must be > 0, got {max_grad_norm}")
