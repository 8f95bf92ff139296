"""Errors that reach the user as one line saying what to change.

They deliberately do not derive from ValueError: the CLI library treats a ValueError raised while
building a config as a parse error and wraps it in a box; ours propagate to `rlntp.cli.main`, which
prints them as `error: ...` and exits with status 2 before any work starts.
"""


class UserError(Exception):
    """Bad input from the user: a config value, a path, a checkpoint."""


class ConfigError(UserError):
    """A configuration value is invalid."""


class RunDirError(UserError):
    """A path is not a run directory, or does not hold what was asked for."""


class CheckpointError(UserError):
    """A checkpoint is missing, incomplete or corrupt."""


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)
