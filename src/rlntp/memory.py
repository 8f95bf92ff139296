"""Memory checks before work starts: sizes that cannot fit are refused with one line, not an allocation error."""

import os
from typing import Any

from rlntp.errors import check

GiB = 2**30


def available_memory(device: Any = "cpu") -> int | None:
    """Bytes free for a new allocation on `device` (a torch.device or its name; None where it cannot be known)."""
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cuda":
        import torch  # only here: the theory's commands run without torch

        return torch.cuda.mem_get_info(device)[0]
    if kind == "cpu":
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


def check_fits(needed: int, device: Any, what: str, hint: str) -> None:
    """ConfigError, before any work starts, if `needed` bytes (an estimate) cannot fit on `device`."""
    free = available_memory(device)
    check(free is None or needed <= free,
          f"{what} needs about {needed / GiB:,.1f} GiB, more than the {free / GiB if free else 0:,.1f} GiB "
          f"available on {device}; {hint}")
