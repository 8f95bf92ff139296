"""Device selection, CPU threads, the precision of forward passes, and seeded random generators that live on
the device."""

import contextlib
from collections.abc import Iterator

import torch

from rlntp.errors import ConfigError, check, check_choice


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


MAX_THREADS = 1024
"""The most CPU threads a run may ask for (torch takes a C int; no machine of ours has more cores)."""


def check_threads(threads: int) -> None:
    """ConfigError unless `threads` is a thread count a run can pin."""
    check(1 <= threads <= MAX_THREADS, f"threads must be between 1 and {MAX_THREADS}, got {threads}")


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with `threads` torch CPU threads, then restore the caller's count.

    A run's thread count is part of its config, not the host's: CPU kernels split their reductions by
    thread, so the count changes the floats (and, near a transition, a run's fate).
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def seeded_generator(device: torch.device, *keys: int) -> torch.Generator:
    """A generator on `device` whose seed is a fixed function of `keys` (e.g. run seed, step)."""
    seed = 0
    for key in keys:
        seed = (seed * 1_000_003 + int(key) + 1) % (2**63 - 1)
    return torch.Generator(device=device).manual_seed(seed)


PRECISIONS = ("fp32", "bf16", "auto")
"""Precision of forward passes: float32, bfloat16 autocast, or auto (bf16 on a CUDA GPU that has it, else fp32)."""


def check_precision(precision: str) -> None:
    """ConfigError unless `precision` is one of PRECISIONS."""
    check_choice("precision", precision, PRECISIONS)


def resolve_precision(precision: str, device: torch.device) -> str:
    """fp32 or bf16: `auto` is bf16 on a CUDA device that supports it, fp32 elsewhere."""
    check_precision(precision)
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return precision


def autocast(device: torch.device, precision: str) -> torch.autocast:
    """The context of forward passes: fp32 (autocast off), or bf16 (torch.autocast: matmuls and attention
    in bfloat16; weights, gradients, optimizer, softmax and losses in float32). Backward passes run
    outside it, as PyTorch recommends (they follow the dtypes of their forward ops)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a no-op on the CPU): step times are read after it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


# aten operators whose result the host must wait for on an accelerator: a scalar read (`.item()`, `bool(t)`,
# `int(t)`), an output whose size depends on the values (nonzero, boolean-mask indexing, unique), a comparison
# returning a Python bool. `.tolist()` and `.cpu()` of a CPU tensor dispatch nothing and are not seen on a CPU.
_SYNCING_OPS = ("_local_scalar_dense", "nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive",
                "is_nonzero", "equal", "allclose", "masked_scatter", "bincount", "histc")


class HostSyncCounter:
    """Counts the operations that would make the host wait for the device, on any device (a CPU too).

    `with HostSyncCounter() as syncs: step()` then `syncs.count` and `syncs.ops` (their names). Also counted:
    indexing with a boolean mask, and copies between devices. On CUDA, `torch.cuda.set_sync_debug_mode`
    sees the real synchronisations; this sees the operations that cause them wherever the code runs, so a
    test on a CPU can hold a training step to none. It cannot see a copy to the GPU that a CPU run does not make
    (a CPU index tensor used on a CUDA tensor, `torch.tensor(..., device="cuda")`), nor into compiled code
    (torch.compile's graphs do not pass through dispatch modes); it counts a non-blocking copy from pinned memory,
    which does not wait.
    """

    def __init__(self):
        from torch.utils._python_dispatch import TorchDispatchMode

        counter = self
        self.ops: list[str] = []

        class _Mode(TorchDispatchMode):
            def __torch_dispatch__(self, func, types, args=(), kwargs=None):
                counter._see(func, args, kwargs or {})
                return func(*args, **(kwargs or {}))

        self._mode = _Mode()

    @property
    def count(self) -> int:
        return len(self.ops)

    def _see(self, func, args, kwargs) -> None:
        name = func._schema.name.removeprefix("aten::")
        syncs = name in _SYNCING_OPS
        if name == "repeat_interleave":  # repeats given as a tensor: the output's size is their sum
            syncs = func._overloadname != "self_int" and kwargs.get("output_size") is None
        elif name in ("index", "index_put", "index_put_") and len(args) > 1:
            syncs = any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in args[1] if
                        i is not None)
        elif name in ("_to_copy", "to", "copy_") and args and isinstance(args[0], torch.Tensor):
            target = kwargs.get("device") if name != "copy_" else (args[1].device if len(args) > 1 else None)
            syncs = target is not None and torch.device(target).type != args[0].device.type
        if syncs:
            self.ops.append(name)

    def __enter__(self) -> "HostSyncCounter":
        self._mode.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._mode.__exit__(*exc)
