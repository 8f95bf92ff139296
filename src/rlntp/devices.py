"""Device selection, memory checks before a run starts, and seeded random generators on the device."""

import os

import torch

from rlntp.errors import ConfigError, check

GiB = 2**30


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when available, else CPU; an explicit name must be a device that exists here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N, mps or auto") from e
    if device.type == "cuda":
        check(torch.cuda.is_available(), f"device {name!r} asked for, but CUDA is not available here; use --device cpu")
        count = torch.cuda.device_count()
        check(device.index is None or device.index < count,
              f"device {name!r} asked for, but this machine has {count} CUDA device(s): cuda:0 .. cuda:{count - 1}")
    elif device.type == "mps":
        check(torch.backends.mps.is_available(), f"device {name!r} asked for, but MPS is not available here")
    else:
        check(device.type == "cpu" and device.index in (None, 0),
              f"device {name!r} is not one rlntp runs on; use cpu, cuda, cuda:N, mps or auto")
    return device


def available_memory(device: torch.device) -> int | None:
    """Bytes free for a new allocation on `device` (None where it cannot be known)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        try:  # Linux: MemAvailable counts reclaimable page cache, unlike sysconf's free pages
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            return None
    return None


def check_fits(needed: int, device: torch.device, what: str, hint: str) -> None:
    """ConfigError, before any work starts, if `needed` bytes (an estimate) cannot fit on `device`."""
    free = available_memory(device)
    check(free is None or needed <= free,
          f"{what} needs about {needed / GiB:,.1f} GiB, more than the {free / GiB if free else 0:,.1f} GiB "
          f"available on {device}; {hint}")


def seeded_generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator on `device` whose seed is a fixed function of `keys` (e.g. run seed, step)."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)
