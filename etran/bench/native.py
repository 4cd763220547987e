"""Native (C) benchmark tools in etran/bench/c, compiled with gcc and cached by content.

    from etran.bench import native
    path = native.binary("xdp_echo")     # compiles on first use, then reuses the binary
    native.build_all()                   # what `etran build` (and so ./bootstrap) runs

The cache key covers the source, every header beside it, the compiler's version and the
flags, so editing a source rebuilds it and nothing else; binaries are written atomically,
so concurrent builds never run half a file.  The tools use only libc and the kernel's
UAPI headers (<linux/if_xdp.h>, <linux/bpf.h>): the apt packages are gcc, libc6-dev and
linux-libc-dev (no libbpf or libxdp).

Where binaries go: $ETRAN_NATIVE_CACHE_DIR, else $XDG_CACHE_HOME/etran/native
(~/.cache/etran/native).  $CC picks another compiler than gcc.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from ..errors import BuildError

SOURCE_DIR = Path(__file__).resolve().parent / "c"
CFLAGS = ("-O2", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror=implicit-function-declaration")
PROGRAMS = ("xdp_echo",)
APT_HINT = "apt-get install gcc libc6-dev linux-libc-dev (or run ./bootstrap)"


def cache_dir() -> Path:
    """$ETRAN_NATIVE_CACHE_DIR, else $XDG_CACHE_HOME/etran/native (~/.cache/etran/native)."""
    base = os.environ.get("ETRAN_NATIVE_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "etran", "native")
    return Path(base)


@functools.cache
def _compiler(cc: str) -> tuple[str, str]:
    path = shutil.which(cc)
    if path is None:
        raise BuildError(f"the C compiler {cc!r} is not installed; {APT_HINT}")
    try:
        version = subprocess.run([path, "--version"], capture_output=True, text=True, check=True,
                                 timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        raise BuildError(f"{path} --version failed ({e}); is the C compiler working? {APT_HINT}") from e
    return path, version


def compiler() -> tuple[str, str]:
    """(path, version text) of $CC or gcc."""
    return _compiler(os.environ.get("CC") or "gcc")


def source_path(name: str) -> Path:
    path = SOURCE_DIR / f"{name}.c"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SOURCE_DIR.glob("*.c")))
        raise BuildError(f"no native source {path.name} in {SOURCE_DIR}; known programs: {known}")
    return path


def cache_key(source: Path, extra_flags: tuple[str, ...] = ()) -> str:
    h = hashlib.sha256()
    h.update(compiler()[1].encode())
    h.update(repr((CFLAGS, extra_flags)).encode())
    h.update(source.read_bytes())
    for header in sorted(source.parent.glob("*.h")):
        h.update(header.name.encode())
        h.update(header.read_bytes())
    return h.hexdigest()[:20]


def _explain(stderr: str) -> str:
    m = re.search(r"fatal error: ([^:\s]+): No such file or directory", stderr)
    if m:
        header = m.group(1)
        pkg = "linux-libc-dev" if header.startswith(("linux/", "asm/")) else "libc6-dev"
        return f"the header <{header}> is missing: apt-get install {pkg} (or run ./bootstrap)"
    return ""


def compile_program(source: str | os.PathLike, extra_flags: tuple[str, ...] = (), cache: Path | None = None) -> Path:
    """Compile one C file (cached by content) and return the executable's path."""
    source = Path(source).resolve()
    if not source.exists():
        raise BuildError(f"no such C source: {source}")
    out_dir = Path(cache) if cache is not None else cache_dir()
    out = out_dir / f"{source.stem}-{cache_key(source, extra_flags)}"
    if out.exists() and os.access(out, os.X_OK):
        return out
    out_dir.mkdir(parents=True, exist_ok=True)
    cc, _ = compiler()
    fd, tmp = tempfile.mkstemp(dir=out_dir, prefix=f".{source.stem}-", suffix=".tmp")
    os.close(fd)
    cmd = [cc, *CFLAGS, *extra_flags, f"-I{source.parent}", str(source), "-o", tmp]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as e:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise BuildError(f"running {cc} on {source.name} failed: {e}") from e
    if proc.returncode != 0:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        hint = _explain(proc.stderr)
        raise BuildError(f"{Path(cc).name} failed to compile {source.name}"
                         + (f": {hint}" if hint else "") + f":\n{proc.stderr.strip()}")
    os.chmod(tmp, 0o755)  # world-executable: benchmark workers may run as other users
    os.replace(tmp, out)  # atomic
    return out


def binary(name: str = "xdp_echo") -> Path:
    """The compiled etran/bench/c/<name>.c (built now if needed)."""
    return compile_program(source_path(name))


def build_all() -> list[Path]:
    """Compile every native tool (for set-up: `etran build`); returns their paths."""
    return [binary(name) for name in PROGRAMS]
