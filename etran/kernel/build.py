"""Compile the eBPF C sources in etran/kernel/bpf with clang, cached by content.

The cache key covers the source, every header beside it, the clang version and the flags,
so editing a source or a shared header rebuilds exactly what might have changed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import BuildError

SOURCE_DIR = Path(__file__).resolve().parent / "bpf"
CFLAGS = ("-target", "bpf", "-O2", "-g", "-Wall", "-Wno-unused-function", "-mcpu=v3")


def cache_dir() -> Path:
    """Where objects are kept: $ETRAN_CACHE_DIR, else ~/.cache/etran/bpf."""
    base = os.environ.get("ETRAN_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "etran", "bpf")
    return Path(base)


@functools.cache
def _clang() -> tuple[str, str]:
    clang = shutil.which("clang")
    if clang is None:
        raise BuildError("clang is not installed; run ./bootstrap (or apt-get install clang) to install it")
    version = subprocess.run([clang, "--version"], capture_output=True, text=True, check=True).stdout
    return clang, version


@functools.cache
def _multiarch_include() -> str:
    """<linux/bpf.h> pulls in <asm/types.h>, which lives under the multiarch include dir."""
    try:
        arch = subprocess.run(["gcc", "-print-multiarch"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        arch = f"{os.uname().machine}-linux-gnu"
    return f"/usr/include/{arch}"


def source_path(name: str) -> Path:
    path = SOURCE_DIR / f"{name}.bpf.c"
    if not path.exists():
        known = ", ".join(sorted(p.name.removesuffix(".bpf.c") for p in SOURCE_DIR.glob("*.bpf.c")))
        raise BuildError(f"no eBPF source {path.name} in {SOURCE_DIR}; known programs: {known}")
    return path


def _cache_key(source: Path, extra_flags: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    h.update(_clang()[1].encode())
    h.update(repr((CFLAGS, extra_flags)).encode())
    h.update(source.read_bytes())
    headers = {p.resolve() for p in (*source.parent.glob("*.h"), *SOURCE_DIR.glob("*.h"))}
    for header in sorted(headers):
        h.update(header.name.encode())
        h.update(header.read_bytes())
    return h.hexdigest()[:20]


def compile_source(source: Path, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile one .bpf.c file (cached) and return the object's path."""
    source = Path(source).resolve()
    name = source.name.removesuffix(".bpf.c").removesuffix(".c")
    out = cache_dir() / f"{name}-{_cache_key(source, extra_flags)}.o"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    clang, _ = _clang()
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".o.tmp")
    os.close(fd)
    cmd = [clang, *CFLAGS, *extra_flags, f"-I{source.parent}", f"-I{SOURCE_DIR}",
           f"-I{_multiarch_include()}", "-c", str(source), "-o", tmp]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise BuildError(f"clang failed to compile {source.name}:\n{proc.stderr.strip()}")
    os.replace(tmp, out)  # atomic: concurrent builds never see half an object
    return out


def compile_object(name: str, extra_flags: tuple[str, ...] = ()) -> Path:
    """Compile etran/kernel/bpf/<name>.bpf.c (cached) and return the object's path."""
    return compile_source(source_path(name), extra_flags)
