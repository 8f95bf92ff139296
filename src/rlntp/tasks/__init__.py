"""Tasks: mixtures of long (chain-of-thought) and short sequences encoding one task."""

from dataclasses import dataclass

from rlntp.errors import check
from rlntp.tasks.parity import ParityTask

TASKS = ("parity",)


@dataclass(frozen=True)
class TaskConfig:
    """Which mixture distribution to learn from."""

    task: str = "parity"
    """the task: parity"""
    d: int = 20
    """number of input bits"""
    p_cot: float = 0.25
    """probability of a long (full chain-of-thought) sequence"""
    p_medium: float = 0.0
    """probability of a medium (partial chain-of-thought) sequence (paper App. C.2)"""

    def __post_init__(self):
        check(self.task in TASKS, f"unknown task {self.task!r}; choose one of: {', '.join(TASKS)}")
        make_task(self)  # validates the task's own fields before any work starts


def make_task(config: TaskConfig) -> ParityTask:
    """The task object that samples sequences and checks answers for `config`."""
    return ParityTask(d=config.d, p_cot=config.p_cot, p_medium=config.p_medium)
