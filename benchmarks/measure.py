"""Time and peak memory of a training step, for the benchmarks' tables.

`clock(device)` reads the time once the device has finished its queued work (CUDA runs ahead of
Python otherwise).

Memory: what is reported is the peak of tensor memory allocated during the step above what was allocated
when it began: activations, gradients, temporaries and anything the step creates, not the weights
and optimizer state it starts with (`state_bytes` gives those). On CUDA it is the caching
allocator's own peak. On a CPU there is no allocator peak to read, and the process's resident
size is useless for it (malloc keeps freed pages, so a step that reuses them shows no growth); the
PyTorch profiler's memory records (every allocation and free, attributed to the operator that made
it) are replayed in time order instead. Profiling slows the step, so the benchmarks measure memory
on an extra step outside the timed ones.
"""

import time
from collections.abc import Callable

import torch
from torch.profiler import ProfilerActivity, profile

MB = 2**20


def clock(device: torch.device | str) -> float:
    """time.perf_counter() after the device has finished its queued work."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


class StepMemory:
    """Start before a step and stop after it (or use as a context manager); `peak` is then in bytes.

    Works across callbacks (a Hugging Face Trainer's step begin and end), which is why it is not
    only a function.
    """

    def __init__(self, device: torch.device | str):
        self.device = torch.device(device)
        self.peak = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._prof = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._prof.start()

    def stop(self) -> int:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._prof.stop()
            # An operator's self memory is what it allocated net of its children, frees outside
            # any operator are "[memory]" records. Allocations are counted when an operator starts
            # and frees when it ends (an autograd node frees its saved tensors after its children
            # ran); in that order the running sum is the live memory.
            changes = sorted((e.time_range.start, e.self_cpu_memory_usage) if e.self_cpu_memory_usage > 0
                             else (e.time_range.end, e.self_cpu_memory_usage) for e in self._prof.events())
            live = peak = 0
            for _, change in changes:
                live += change
                peak = max(peak, live)
            self.peak = peak
        return self.peak

    def __enter__(self) -> "StepMemory":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def step_peak(step: Callable[[], object], device: torch.device | str) -> int:
    """Bytes of tensor memory `step()` allocates at its peak, above what was allocated before it."""
    with StepMemory(device) as memory:
        step()
    return memory.peak


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None = None) -> int:
    """Bytes of the weights and the optimizer's state (Adam: two moments per weight)."""
    tensors = list(model.parameters())
    if optimizer is not None:
        tensors += [t for s in optimizer.state.values() for t in s.values() if isinstance(t, torch.Tensor)]
    return sum(t.numel() * t.element_size() for t in tensors)
