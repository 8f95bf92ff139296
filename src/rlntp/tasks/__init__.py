"""Tasks: mixtures of long (chain-of-thought) and short sequences encoding one task.

Every stage uses the `Task` interface of `tasks/base.py`; a new task is a module with a `Task`
subclass, listed in TASKS, and its options in TaskConfig.
"""

from dataclasses import dataclass

from rlntp.config import Config
from rlntp.errors import check, check_choice
from rlntp.tasks.base import Task
from rlntp.tasks.multiplication import MultiplicationTask
from rlntp.tasks.parity import ParityTask

TASKS = ("parity", "mult")


@dataclass(frozen=True)
class TaskConfig(Config):
    """Which mixture distribution to learn from."""

    task: str = "parity"
    """the task: parity or mult (n x n multiplication)"""
    d: int = 20
    """parity: number of input bits"""
    digits: int = 4
    """mult: digits n of each operand"""
    p_cot: float = 0.25
    """probability of a long (full chain-of-thought) sequence"""
    p_medium: float = 0.0
    """parity: probability of a medium (partial chain-of-thought) sequence (paper App. C.2)"""
    data: str | None = None
    """a dataset directory made by `rlntp data` (its train split for pre-training and RL prompts, its test
    split for evaluation); default: fresh samples of the task"""

    def check(self) -> None:
        check_choice("task", self.task, TASKS)
        check(self.task == "parity" or self.p_medium == 0,
              f"p_medium (a partial chain of thought) exists for parity only, got {self.p_medium} with task {self.task}")
        make_task(self)  # validates the task's own fields before any work starts
        # and the size option of the other task: a bad --digits is refused even where --task parity ignores it
        ParityTask(d=self.d, p_cot=self.p_cot)
        MultiplicationTask(digits=self.digits, p_cot=self.p_cot)


def make_task(config: TaskConfig) -> Task:
    """The task object that samples sequences and checks answers for `config`."""
    if config.task == "mult":
        return MultiplicationTask(digits=config.digits, p_cot=config.p_cot)
    return ParityTask(d=config.d, p_cot=config.p_cot, p_medium=config.p_medium)
