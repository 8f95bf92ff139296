"""The options pre-training and RL post-training share: optimization, seeds, evaluation and saving cadence,
device and precision. Each stage's config derives from `StageConfig` and sets its own defaults."""

from dataclasses import dataclass
from typing import Any

from rlntp.config import Config
from rlntp.devices import check_precision, check_threads
from rlntp.errors import check, check_choice
from rlntp.generation import DECODERS
from rlntp.training.optim import check_optimizer


def as_recorded(normalized: dict[str, Any], saved: dict[str, Any], section: str) -> dict[str, Any]:
    """A saved config.json `normalized` by this code (defaults filled in), except that one written before runs
    recorded their threads keeps none: its thread count is unknown, so resuming it, or counting it as a sweep's
    finished run, is refused as a changed config rather than assumed."""
    if "threads" not in (saved.get(section) or {}):
        normalized[section].pop("threads", None)
    return normalized


@dataclass(frozen=True)
class StageConfig(Config):
    """Optimization and bookkeeping of a training stage."""

    steps: int = 1
    """optimizer steps, each on a fresh batch (with a dataset: the next batch of its epochs; STaR: rounds)"""
    lr: float = 1e-3
    """learning rate"""
    optimizer: str = "adam"
    """adam (paper, parity) or adamw (paper, multiplication)"""
    weight_decay: float = 0.0
    """adamw: decoupled weight decay (torch's default is 0.01)"""
    max_grad_norm: float | None = None
    """clip the gradient norm to this before every step (paper, multiplication: 1.0); default: no clipping"""
    seed: int = 0
    """seeds the initialization or rollouts, the training data and the evaluation inputs"""
    eval_every: int = 1
    """evaluate every this many steps (and at step 0 and the last step)"""
    eval_samples: int = 1
    """inputs per evaluation, fresh or the first of the dataset's test split (paper: 2,560; in RL 640)"""
    save_every: int = 1
    """checkpoint every this many steps (and at the last step); all checkpoints are kept"""
    device: str = "auto"
    """cpu, cuda, cuda:N, or auto (CUDA when available)"""
    threads: int = 1
    """CPU threads of the run's torch operations. Part of its numerics: the same seed and threads give the same
    floats (on one torch build and CPU kernel family), whatever the machine's core count or the sweep's workers"""
    precision: str = "fp32"
    """fp32, bf16 (forward passes, rollouts too, under bfloat16 autocast; weights and optimizer stay float32),
    or auto (bf16 on a CUDA GPU that has it, else fp32)"""

    decode: str = "shared"
    """how evaluations (and RL rollouts) decode: shared (rows share their prefixes, ended rows leave: the least
    arithmetic, but the host reads the device every token) or static (fixed shapes, nothing read: for CUDA
    graphs). The same tokens for the same logits; docs/gpu.md"""

    def check(self) -> None:
        check_threads(self.threads)
        check_choice("decode", self.decode, tuple(DECODERS))
        for name in ("steps", "eval_every", "eval_samples", "save_every"):
            check(getattr(self, name) >= 1, f"{name} must be >= 1, got {getattr(self, name)}")
        check_optimizer(self.optimizer, self.lr, self.weight_decay, self.max_grad_norm)
        check_precision(self.precision)
