"""Languages the sandbox runs: source file, compile and run commands, toolchain detection.

Add one more language by appending a :class:`Language` to :data:`LANGUAGES` (and its aliases);
``detect()`` offers it wherever its toolchain is installed.
"""

from __future__ import annotations

import functools
import glob
import os
import shutil
import subprocess
from dataclasses import dataclass, field

SYSTEM_PATH = "/usr/bin:/bin:/usr/local/bin"


@dataclass(frozen=True)
class Toolchain:
    """A language resolved on this machine: absolute commands plus what to bind into the sandbox."""

    language: Language
    compile_argv: list[str] | None
    run_argv: list[str]
    binds: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    version: str = ""

    def run_argv_for(self, limits) -> list[str]:
        """The run command with ``{mem}`` (the memory limit, MiB) and ``{heap}`` (half of it) filled in."""
        mem = int(limits.memory_mb)
        return [a.replace("{mem}", str(mem)).replace("{heap}", str(max(mem // 2, 32))) for a in self.run_argv]


@dataclass(frozen=True)
class Language:
    """How to build and run a program. ``{mem}``/``{heap}`` in a run command: the memory limit / half of it, MiB."""

    name: str
    source: str
    compile: tuple[str, ...] | None
    run: tuple[str, ...]
    probe: str
    aliases: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    # Languages whose runtime reserves large address ranges get a larger RLIMIT_DATA floor (MiB).
    compile_memory_floor_mb: int = 1024

    def resolve(self) -> Toolchain | None:
        """The toolchain on this machine, or None when the probe binary is missing."""
        binds: list[str] = []
        if self.name == "rust":
            sysroot = _rust_sysroot()
            if sysroot is None:
                return None
            binds.append(sysroot)
            tool = os.path.join(sysroot, "bin", "rustc")
        else:
            tool = shutil.which(self.probe, path=SYSTEM_PATH)
            if tool is None:
                return None
        if self.name == "java":
            binds.extend(glob.glob("/etc/java-*"))
        if self.name == "go":
            goroot = _go_root(tool)
            if goroot and not goroot.startswith("/usr/"):
                binds.append(goroot)

        def absolute(argv: tuple[str, ...]) -> list[str]:
            out = list(argv)
            if out[0] == self.probe:
                out[0] = tool
            elif not out[0].startswith(("/", "./")):
                found = shutil.which(out[0], path=SYSTEM_PATH)
                if found:
                    out[0] = found
            return out

        return Toolchain(
            language=self,
            compile_argv=absolute(self.compile) if self.compile else None,
            run_argv=absolute(self.run),
            binds=binds,
            env=dict(self.env),
            version=_version(tool),
        )


def _rust_sysroot() -> str | None:
    rustc = shutil.which("rustc", path=SYSTEM_PATH + ":" + os.path.expanduser("~/.cargo/bin"))
    if rustc is None:
        return None
    try:
        out = subprocess.run([rustc, "--print", "sysroot"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    sysroot = out.stdout.strip()
    if out.returncode != 0 or not os.path.isfile(os.path.join(sysroot, "bin", "rustc")):
        return None
    # Sandboxes run as an unprivileged uid: a toolchain under e.g. /root (mode 700) is unreachable.
    return sysroot if _world_traversable(sysroot) else None


def _world_traversable(path: str) -> bool:
    parts = os.path.abspath(path).split(os.sep)
    for i in range(2, len(parts) + 1):
        try:
            if not os.stat(os.sep.join(parts[:i]) or os.sep).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def _go_root(go: str) -> str | None:
    try:
        out = subprocess.run([go, "env", "GOROOT"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def _version(tool: str) -> str:
    for flag in ("--version", "-version", "version"):
        try:
            out = subprocess.run([tool, flag], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        text = (out.stdout or out.stderr).strip().splitlines()
        if out.returncode == 0 and text:
            return text[0][:120]
    return ""


LANGUAGES: tuple[Language, ...] = (
    Language("python", "main.py", None, ("python3", "-u", "main.py"), "python3", aliases=("python3", "py")),
    Language("bash", "main.sh", None, ("bash", "main.sh"), "bash", aliases=("sh", "shell")),
    Language("nodejs", "main.js", None, ("node", "--max-old-space-size={heap}", "main.js"), "node",
             aliases=("javascript", "js", "node")),
    Language("c", "main.c", ("gcc", "-O2", "-std=gnu17", "-o", "main", "main.c", "-lm"), ("./main",), "gcc"),
    Language("cpp", "main.cpp", ("g++", "-O2", "-std=gnu++17", "-o", "main", "main.cpp"), ("./main",), "g++",
             aliases=("c++",)),
    Language("go", "main.go", ("go", "build", "-o", "main", "main.go"), ("./main",), "go", aliases=("golang",),
             env=(("GOCACHE", "/tmp/gocache"), ("GOPATH", "/tmp/gopath"), ("GOFLAGS", "-mod=mod"),
                  ("CGO_ENABLED", "0"))),
    Language("java", "Main.java", ("javac", "-J-Xss8m", "-J-XX:+UseSerialGC", "Main.java"),
             ("java", "-Xmx{heap}m", "-Xss8m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1", "Main"), "javac",
             compile_memory_floor_mb=2048),
    Language("rust", "main.rs", ("rustc", "-O", "-o", "main", "main.rs"), ("./main",), "rustc",
             compile_memory_floor_mb=2048),
)


def _index() -> dict[str, Language]:
    out: dict[str, Language] = {}
    for lang in LANGUAGES:
        out[lang.name] = lang
        for alias in lang.aliases:
            out[alias] = lang
    return out


def canonical(name: str) -> str | None:
    """The canonical language name for ``name`` or an alias (``javascript`` → ``nodejs``), else None."""
    lang = _index().get(name.strip().lower())
    return lang.name if lang else None


@functools.cache
def detect(enabled: tuple[str, ...] = ()) -> dict[str, Toolchain]:
    """Toolchains present on this machine, restricted to ``enabled`` when given."""
    wanted = {canonical(n) or n for n in enabled}
    out: dict[str, Toolchain] = {}
    for lang in LANGUAGES:
        if wanted and lang.name not in wanted:
            continue
        tc = lang.resolve()
        if tc is not None:
            out[lang.name] = tc
    return out
