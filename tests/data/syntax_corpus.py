"""Real code that a real compiler or parser accepts, with planted syntax errors that it rejects.

Per language, files on this machine are checked by the language's own tool (``gcc`` /
``g++ -fsyntax-only``, ``ast.parse``, ``bash -n``, ``node --check``, ``javac`` stopped after
parsing). Each accepted file gets one planted breakage (a deleted token, an unclosed brace,
a missing ``then``/``do``/``:``) that the same tool must reject — for C and C++ with an
``expected …`` diagnostic, so the error is a syntax error, not a type error. The slow part
(compiler runs) is cached in ``$XDG_CACHE_HOME/codekiln/`` keyed by the tool versions, so
later runs only re-read the files and re-apply the recorded mutations.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import re
import shutil
import subprocess
import sysconfig
import tempfile
import warnings
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CACHE_VERSION = 3
PER_LANGUAGE = 120
LANGUAGES = ("python", "c", "cpp", "bash", "javascript", "java")
TOOLS = {"c": "gcc", "cpp": "g++", "bash": "bash", "javascript": "node", "java": "javac", "python": None}


def cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "codekiln"


def _run(cmd: list[str], data: bytes | None = None, timeout: float = 60) -> tuple[int, str]:
    try:
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, "timeout"
    return p.returncode, p.stderr.decode("utf-8", "replace")


def _read(p: Path) -> str | None:
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if b"\x00" in data or len(data) > 300_000 or len(data) < 200:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


# ----------------------------------------------------------------------------- candidates


def _candidates(language: str) -> list[tuple[str, str]]:
    """(id, text) of candidate files, deterministic order."""
    out: list[tuple[str, str]] = []
    if language == "python":
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        files = sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts)
    elif language == "c":
        files = sorted(Path("/usr/include").glob("*.h")) + sorted(Path("/usr/include").glob("*/*.h"))
        files += sorted(Path("/usr/share/doc").glob("*/examples/*.c"))
    elif language == "cpp":
        cxx = sorted(Path("/usr/include/c++").glob("*"))
        files = []
        if cxx:
            root = cxx[-1]
            files = [p for p in sorted(root.iterdir()) if p.is_file()] + sorted((root / "bits").glob("*.h"))
        files += sorted(Path("/usr/include").glob("*.h"))  # C headers seen by a C++ compiler (extern "C" guards)
    elif language == "bash":
        files = []
        for root in ("/usr/bin", "/usr/sbin", "/usr/share", "/usr/lib", "/etc"):
            for p in sorted(Path(root).rglob("*")) if root != "/usr/bin" else sorted(Path(root).iterdir()):
                if p.suffix in (".sh", ".bash") or (p.suffix == "" and p.is_file() and os.access(p, os.X_OK)):
                    files.append(p)
    elif language == "javascript":
        files = sorted(Path("/usr/lib/node_modules").rglob("*.js"))
    elif language == "java":
        for src in sorted(Path("/usr/lib/jvm").glob("*/lib/src.zip")):
            if src.exists():
                with zipfile.ZipFile(src) as z:
                    names = sorted(n for n in z.namelist() if n.startswith("java.base/java/") and n.endswith(".java"))
                    rng = random.Random(0)
                    for n in rng.sample(names, min(len(names), PER_LANGUAGE * 3)):
                        text = z.read(n).decode("utf-8", "replace")
                        if 200 <= len(text) <= 300_000:
                            out.append((f"{src}!{n}", text))
                break
        return out
    else:
        raise ValueError(language)
    rng = random.Random(0)
    files = [p for p in files if p.is_file() and not p.is_symlink()]
    rng.shuffle(files)
    for p in files[: PER_LANGUAGE * 8]:
        text = _read(p)
        if text is None:
            continue
        if language == "bash" and p.suffix not in (".sh", ".bash"):
            first = text.split("\n", 1)[0]
            if not re.match(r"#!\s*\S*/(env\s+)?(ba)?sh\b", first):
                continue
        out.append((str(p), text))
    return out


def read_text(doc_id: str) -> str:
    """The text of a corpus entry (a file path, or ``zip!member``)."""
    if "!" in doc_id:
        z, member = doc_id.split("!", 1)
        with zipfile.ZipFile(z) as zf:
            return zf.read(member).decode("utf-8", "replace")
    return Path(doc_id).read_text(encoding="utf-8")


# ----------------------------------------------------------------------------- real tools


def _accepts(language: str, texts: list[tuple[str, str]]) -> list[bool]:
    """The real tool's verdict for each (name, text); for C/C++ a rejection must be a syntax error."""
    if language == "python":
        res = []
        for _, t in texts:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    ast.parse(t.encode("utf-8", "surrogateescape"))
                res.append(True)
            except (SyntaxError, ValueError):
                res.append(False)
        return res
    if language == "java":
        return _javac(texts)

    def one(item: tuple[str, str]) -> bool | None:
        name, text = item
        with tempfile.TemporaryDirectory() as d:
            if language in ("c", "cpp"):
                f = Path(d) / ("x.h" if language == "c" else "x.hpp")
                f.write_text(text, encoding="utf-8")
                tool = ["gcc", "-x", "c", "-std=gnu11"] if language == "c" else ["g++", "-x", "c++", "-std=gnu++17"]
                inc = ["-I", str(Path(name).parent)] if name.startswith("/") else []
                rc, err = _run([*tool, "-fsyntax-only", "-w", *inc, str(f)])
                if rc == 0:
                    return True
                return False if re.search(r"error: expected|error: unterminated|before .* token", err) else None
            if language == "bash":
                rc, _ = _run(["bash", "-n"], text.encode("utf-8"))
                return rc == 0
            if language == "javascript":
                f = Path(d) / "x.js"
                f.write_text(text, encoding="utf-8")
                rc, _ = _run(["node", "--check", str(f)])
                return rc == 0
        raise ValueError(language)

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, texts))


def _javac(texts: list[tuple[str, str]]) -> list[bool]:
    res: list[bool] = []
    for lo in range(0, len(texts), 60):
        batch = texts[lo : lo + 60]
        with tempfile.TemporaryDirectory() as d:
            paths = []
            for i, (name, text) in enumerate(batch):
                f = Path(d) / str(i) / Path(name.split("!")[-1]).name
                f.parent.mkdir()
                f.write_text(text, encoding="utf-8")
                paths.append(str(f))
            _, err = _run(
                ["javac", "-XDshould-stop.ifNoError=PARSE", "-XDshould-stop.ifError=PARSE", "-d", f"{d}/out", *paths],
                timeout=300,
            )
            bad = {m.group(1) for m in re.finditer(r"^(/\S+\.java):\d+: error", err, re.M)}
            res.extend(p not in bad for p in paths)
    return res


# ----------------------------------------------------------------------------- breakage


def _code_positions(text: str, pattern: str) -> list[re.Match]:
    return list(re.finditer(pattern, text))


MUTATIONS = {
    "python": [("deleted_token", r"[:)\]]"), ("unclosed_bracket", r"\)")],
    "c": [("deleted_token", r"[;)(]"), ("unclosed_brace", r"\}")],
    "cpp": [("deleted_token", r"[;)(]"), ("unclosed_brace", r"\}")],
    "javascript": [("deleted_token", r"[;)(]"), ("unclosed_brace", r"\}")],
    "java": [("deleted_token", r"[;)(]"), ("unclosed_brace", r"\}")],
    "bash": [("missing_then", r"\bthen\b"), ("missing_do_done", r"\b(do|done|fi)\b"), ("deleted_token", r";;|\)")],
}


def _mutate(language: str, text: str, rng: random.Random) -> tuple[str, int, int] | None:
    """A (kind, start, end) span to delete, or None when the file has nothing to break."""
    kinds = MUTATIONS[language][:]
    rng.shuffle(kinds)
    for kind, pattern in kinds:
        hits = _code_positions(text, pattern)
        if hits:
            m = hits[rng.randrange(len(hits))]
            return kind, m.start(), m.end()
    return None


def apply(text: str, start: int, end: int) -> str:
    return text[:start] + text[end:]


# ----------------------------------------------------------------------------- build + cache


def _tool_version(language: str) -> str:
    tool = TOOLS[language]
    if tool is None:
        return sysconfig.get_python_version()
    if shutil.which(tool) is None:
        return "missing"
    _, err = _run([tool, "--version"])
    out = subprocess.run([tool, "--version"], capture_output=True, text=True).stdout
    return hashlib.sha256((out + err).encode()).hexdigest()[:12]


def build(language: str) -> dict:
    """{"good": [id…], "broken": [[id, kind, start, end]…], "tool": …} — cached."""
    tool = TOOLS[language]
    if tool is not None and shutil.which(tool) is None:
        return {"good": [], "broken": [], "tool": "missing"}
    key = f"syntax-corpus-v{CACHE_VERSION}-{language}-{_tool_version(language)}.json"
    path = cache_dir() / key
    if path.exists():
        return json.loads(path.read_text())
    cands = _candidates(language)
    good: list[tuple[str, str]] = []
    for lo in range(0, len(cands), PER_LANGUAGE):
        chunk = cands[lo : lo + PER_LANGUAGE]
        verdicts = _accepts(language, chunk)
        good.extend(c for c, ok in zip(chunk, verdicts, strict=True) if ok)
        if len(good) >= PER_LANGUAGE:
            break
    good = good[:PER_LANGUAGE]
    rng = random.Random(1)
    broken: list[list] = []
    pending = []
    for name, text in good:
        for _ in range(3):
            mut = _mutate(language, text, rng)
            if mut:
                pending.append((name, text, mut))
    verdicts = _accepts(language, [(n, apply(t, m[1], m[2])) for n, t, m in pending])
    seen: set[str] = set()
    for (name, _, mut), ok in zip(pending, verdicts, strict=True):
        if ok is False and name not in seen:  # rejected by the real tool with a syntax error
            seen.add(name)
            broken.append([name, *mut])
    result = {"good": [n for n, _ in good], "broken": broken, "tool": tool or "ast"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    os.replace(tmp, path)
    return result


if __name__ == "__main__":
    import sys

    for lang in sys.argv[1:] or LANGUAGES:
        r = build(lang)
        print(lang, len(r["good"]), len(r["broken"]), flush=True)
