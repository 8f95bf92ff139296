"""Transformers trained from scratch: GPT-2 and Mistral from Hugging Face configs, sized from the task."""

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from transformers import AutoModelForCausalLM
from transformers.utils import logging as hf_logging

from rlntp.config import Config
from rlntp.errors import CheckpointError, check, check_choice
from rlntp.models.gpt import GPT
from rlntp.models.hf import HFCausalLM, hf_config

hf_logging.disable_progress_bar()  # the stages show their own bars; Hugging Face's would interleave with them

ARCHS = ("gpt2", "mistral")
IMPLS = ("auto", "fast", "hf")


@dataclass(frozen=True)
class ModelConfig(Config):
    """A decoder-only transformer (paper App. B.1: depth, embedding dimension, heads; no dropout)."""

    arch: str = "gpt2"
    """architecture: gpt2 (absolute positions) or mistral (rotary positions)"""
    layers: int = 2
    """number of transformer blocks"""
    width: int = 128
    """embedding dimension; each head has width / heads dimensions"""
    heads: int = 4
    """attention heads per block"""
    impl: str = "auto"
    """fast (plain PyTorch GPT-2, same weights), hf (the Hugging Face model), auto (fast where it exists)"""

    def check(self) -> None:
        check_choice("arch", self.arch, ARCHS)
        check_choice("impl", self.impl, IMPLS)
        check(self.layers >= 1, f"layers must be >= 1, got {self.layers}")
        check(self.heads >= 1, f"heads must be >= 1, got {self.heads}")
        check(self.width >= 1 and self.width % self.heads == 0,
              f"width must be a positive multiple of heads, got width={self.width}, heads={self.heads}")
        check(not (self.impl == "fast" and self.arch != "gpt2"),
              f"impl 'fast' exists for gpt2 only; use --impl hf (or auto) with --arch {self.arch}")
        if self.arch == "mistral":
            check((self.width // self.heads) % 2 == 0,
                  f"mistral's rotary embedding needs an even head dimension, got width/heads={self.width // self.heads}")

    @property
    def uses_fast_path(self) -> bool:
        return self.arch == "gpt2" and self.impl in ("auto", "fast")


def build_model(config: ModelConfig, vocab_size: int, context_len: int, eos_id: int, seed: int,
                device: str | torch.device = "cpu") -> nn.Module:
    """A freshly initialized model (Hugging Face's initialization, seeded, identical on every device)."""
    hf_cfg = hf_config(config.arch, config.layers, config.width, config.heads, vocab_size, context_len, eos_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        hf_model = AutoModelForCausalLM.from_config(hf_cfg)
    return _wrap(hf_model.to(device), config.uses_fast_path)


def save_model(model: nn.Module, directory: str | Path) -> None:
    """Save as a Hugging Face checkpoint (config.json + model.safetensors), loadable by `transformers`."""
    model.to_hf().save_pretrained(directory, safe_serialization=True)


def load_model(directory: str | Path, config: ModelConfig, device: str | torch.device = "cpu") -> nn.Module:
    """Load a checkpoint saved by `save_model` (safetensors only: nothing is unpickled)."""
    directory = Path(directory)
    if not (directory / "model.safetensors").is_file():
        raise CheckpointError(f"{directory} has no model.safetensors; it is not a complete checkpoint")
    try:
        hf_model = AutoModelForCausalLM.from_pretrained(directory, use_safetensors=True)
    except Exception as e:  # transformers raises many types for truncated or garbled files
        raise CheckpointError(f"checkpoint {directory} cannot be loaded ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''}); delete it or pick another step") from e
    if hf_model.config.model_type != config.arch:
        raise CheckpointError(f"checkpoint {directory} holds a {hf_model.config.model_type} model, "
                              f"but the run config says {config.arch}")
    return _wrap(hf_model.to(device), config.uses_fast_path)


def memory_estimate(config: ModelConfig, vocab_size: int, context_len: int, train_batch: int,
                    generate_batch: int) -> int:
    """Bytes a stage needs at most, roughly (float32): weights, gradients and Adam moments, and the larger of
    a training step on `train_batch` sequences and batched decoding of `generate_batch` prompts (its KV
    cache, the attention scores of the prompt pass, the outputs kept for scoring).

    It only has to tell possible sizes from impossible ones before a run starts (`--d 100000000` asks
    for exabytes), so it errs on the generous side of the real peak.
    """
    W, L, H, T, V = config.width, config.layers, config.heads, context_len, vocab_size
    params = V * W + T * W + L * (12 * W * W + 13 * W) + 2 * W
    train = train_batch * T * (L * (16 * W + 2 * H * T) + 3 * V)
    decode_batch = min(generate_batch, 2560)  # evaluation decodes in chunks of 2,560 prompts
    decode = decode_batch * T * (2 * L * W + H * T + 4 * W) + 6 * generate_batch * T
    return 4 * (4 * params + max(train, decode))


def _wrap(hf_model, fast: bool) -> nn.Module:
    return GPT.from_hf(hf_model) if fast else HFCausalLM(hf_model)


__all__ = ["ModelConfig", "build_model", "save_model", "load_model", "memory_estimate", "GPT", "HFCausalLM"]
