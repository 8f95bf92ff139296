"""Device selection and seeded random generators that live on the device."""

import torch

from rlntp.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available, else CPU; any explicit name must be usable here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from e
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
    return device


def seeded_generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator on `device` whose seed is a fixed function of `keys` (e.g. run seed, step)."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)
