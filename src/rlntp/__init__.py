"""rlntp: reinforcement learning after next-token prediction, end to end (Tsilivis et al., 2025).

The library's functions and configs (`rlntp.api`) are attributes of this package, imported on first use, so
`import rlntp` alone loads neither torch nor any optional dependency: `rlntp.pretrain(...)`,
`rlntp.sweep(...)`, `rlntp.reproduce("fig1", "cpu")`, `rlntp.TaskConfig(...)` (docs/api.md).
"""

__version__ = "0.1.0"

_API = ("TaskConfig", "ModelConfig", "PretrainConfig", "PosttrainConfig", "ExecutorConfig", "sample", "pretrain",
        "posttrain", "evaluate", "metrics", "sweep", "plan_sweep", "recipes", "reproduce", "plan", "status",
        "plot", "write_report")

__all__ = list(_API)


def __getattr__(name: str):
    if name in _API:
        from rlntp import api

        return getattr(api, name)
    raise AttributeError(f"module 'rlntp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_API))
