"""What run, recipe and dataset directories share: atomic writes, checksums, output-path checks, a lock.

The rules these helpers enforce: rlntp writes a new directory only where nothing is (a missing or
empty directory), never deletes or overwrites a file it did not write, and lets one process at a
time write a directory.
"""

import fcntl
import hashlib
import os
import socket
import sys
import time
from pathlib import Path

from rlntp.errors import ConfigError, RunDirError

LOCK = "rlntp.lock"


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def sha256_file(path: Path) -> str:
    """The SHA-256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_out_path(out: Path, option: str = "--out") -> None:
    """ConfigError unless a directory can be created at `out` (or already is one), checked before any work.

    Refuses an empty path, a file, a path under a file, and a place the user cannot write.
    """
    if str(out) == "":
        raise ConfigError(f"{option} must name a directory, got ''")
    if out.exists() and not out.is_dir():
        raise ConfigError(f"{option} {out} is a file; choose a directory path")
    parent = out
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent.exists() and not parent.is_dir():
        raise ConfigError(f"{option} {out} cannot be created: {parent} is a file")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{option} {out} cannot be written: no write permission in {parent}")


def check_new_dir(out: Path, what: str) -> None:
    """ConfigError unless `out` is a missing or empty directory that can be created (`check_out_path`)."""
    check_out_path(out)
    if foreign_entries(out, set()):
        raise ConfigError(f"{out} exists and is not an empty directory; choose a new --out for the {what}")


def foreign_entries(directory: Path, ours: set[str]) -> list[str]:
    """Names in `directory` other than `ours` and the lock file (empty if it does not exist)."""
    if not directory.is_dir():
        return []
    return sorted(set(os.listdir(directory)) - ours - {LOCK})


def make_dirs(path: Path) -> list[Path]:
    """`mkdir -p path`; returns the directories it created, deepest first (what a clean-up may remove)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
    return missing


class DirLock:
    """An advisory lock on DIRECTORY/rlntp.lock that says which process holds it.

    flock(2) rather than the `filelock` package: `filelock` opens the lock file with O_TRUNC on every
    attempt, which erases the holder's description that a refused process should print. The kernel
    drops an flock when its process dies, so a lock left by a killed run never blocks the next one.
    """

    def __init__(self, directory: Path, what: str = "run directory"):
        self.path = Path(directory) / LOCK
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> "DirLock":
        """Take the lock, or raise RunDirError naming the process that holds it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process that has not said which"
            os.close(fd)
            raise RunDirError(f"{self.path.parent} is in use by another rlntp process ({holder}); "
                              f"wait for it to finish, or choose another {self.what}") from None
        command = " ".join(["rlntp", *sys.argv[1:]]) if sys.argv and "rlntp" in sys.argv[0] else " ".join(sys.argv)
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()} since {since}: {command}\n".encode())
        self._fd = fd
        return self

    def release(self, remove: bool = False) -> None:
        """Release the lock; `remove` also deletes the lock file (when the directory is being removed)."""
        if self._fd is None:
            return
        if remove:
            self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
