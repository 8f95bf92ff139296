"""Files rlntp writes: atomically, checksummed, and never over a file it did not write.

The rules these helpers enforce: rlntp writes a new directory only where nothing is (a missing or
empty directory), and never deletes or overwrites a file it did not write (`runs.dirs` claims the
directories of runs, sweeps and recipes; `write_output` guards single output files).
"""

import hashlib
import os
import tempfile
from pathlib import Path

from rlntp.errors import ConfigError


def atomic_write_text(path: Path, text: str) -> None:
    """Write `text` to `path` so that readers see either the old file or the whole new one."""
    atomic_write_bytes(path, text.encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a uniquely named temporary file beside it, renamed into place."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it private; the file is as readable as any other
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


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
    if out.is_dir() and os.listdir(out):
        raise ConfigError(f"{out} exists and is not an empty directory; choose a new --out for the {what}")


def make_dirs(path: Path) -> list[Path]:
    """`mkdir -p path`; returns the directories it created, deepest first (what a clean-up may remove)."""
    missing = []
    while not path.exists():
        missing.append(path)
        path = path.parent
    for directory in reversed(missing):
        directory.mkdir(exist_ok=True)
    return missing


GENERATOR = "rlntp"
"""How rlntp marks what it writes: a page's generator meta tag, a figure's Software text, a JSON file's key."""


def is_rlntp_output(path: Path) -> bool:
    """Whether the file at `path` carries rlntp's mark (a page, a figure or a JSON record written by rlntp)."""
    path = Path(path)
    try:
        if path.suffix == ".html":
            with open(path, "rb") as f:
                return f'<meta name="generator" content="{GENERATOR}'.encode() in f.read(4096)
        if path.suffix == ".png":
            from PIL import Image

            with Image.open(path) as image:
                return str(image.info.get("Software", "")).startswith(GENERATOR)
        if path.suffix == ".json":
            import json

            record = json.loads(path.read_bytes())
            return isinstance(record, dict) and str(record.get("written_by", "")).startswith(GENERATOR)
    except (OSError, ValueError, SyntaxError):  # unreadable, not valid JSON or UTF-8, not an image
        return False
    return False


def check_output(path: Path, option: str = "--out", suffix: str | None = None) -> Path:
    """ConfigError unless a file (named `*suffix`) can be written at `path`: nothing is there, or a file rlntp
    wrote earlier."""
    path = Path(path)
    if str(path) == "" or path.is_dir():
        raise ConfigError(f"{option} {path} is a directory; name the file to write")
    if suffix is not None and path.suffix != suffix:
        raise ConfigError(f"{option} {path}: name a {suffix} file")
    if path.exists() and not is_rlntp_output(path):
        raise ConfigError(f"{path} exists and was not written by rlntp, which never overwrites such a file; "
                          f"move it away or choose another {option}")
    check_out_path(path.parent, option)
    return path


def write_output(path: Path, data: bytes, option: str = "--out") -> Path:
    """Write an output file atomically where nothing is, or over a file rlntp wrote earlier (`check_output`)."""
    path = check_output(path, option)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, data)
    return path


def figure(nrows: int = 1, ncols: int = 1, figsize: tuple[float, float] = (6.4, 4.8), **subplots):
    """A matplotlib figure and its grid of axes (`Figure.subplots` with `subplots`' options), laid out by
    matplotlib's constrained layout. The object-oriented API: no pyplot state and no backend to choose."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.subplots(nrows, ncols, **subplots)


def save_figure(fig, path: Path, dpi: int = 120, option: str = "--out") -> Path:
    """A matplotlib figure as a PNG marked as rlntp's (`write_output`)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": GENERATOR})
    return write_output(path, buffer.getvalue(), option)


LFS_POINTER = b"version https://git-lfs.github.com/spec/v1"


def read_text_file(path: Path) -> str:
    """The UTF-8 text of a data file; ConfigError naming the cause if it is a Git LFS pointer, unreadable or not UTF-8."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read {path}: {e.strerror or e}") from e
    check_not_lfs_pointer(path, data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start})") from e


def check_not_lfs_pointer(path: Path, head: bytes | None = None) -> None:
    """ConfigError if the file at `path` is a Git LFS pointer (a few lines standing in for the real file)."""
    if head is None:
        try:
            with open(path, "rb") as f:
                head = f.read(len(LFS_POINTER))
        except OSError:
            return
    if head.startswith(LFS_POINTER):
        raise ConfigError(f"{path} is a Git LFS pointer, not the data itself; fetch the file (git lfs pull in its "
                          "repository, or download it from the hub's file page) and pass that")
