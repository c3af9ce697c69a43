"""Syntax filter: drop files with real syntax errors, not files a grammar cannot follow.

Per-language policy (each measured on real code that a real compiler or parser accepts,
with planted breakage; see ``tests/data/test_syntax_real.py`` and the README table):

* **python** — CPython's own parser (``ast.parse`` on the bytes, so coding cookies count).
* **bash** — ``bash -n`` (the shell's own parser) when ``bash`` is installed; tree-sitter
  otherwise. tree-sitter-bash rejects valid scripts (``for f do``, case patterns such as
  ``?*' '?*)``) and accepts a missing ``then``.
* **c / cpp** — first ``bracket_check``: brackets nest and close in the active preprocessor branch
  (two views: unknown ``#if``s take their first, then their last branch), ``()`` balance in every
  ``#define`` body and ``{}`` across them. Then tree-sitter on a *macro-aware* view: comments and
  directives blanked, one branch of every ``#if`` group kept (a three-valued evaluation: ``__cplusplus``
  by language, ``defined X`` for macros defined above, ``#if 0``), annotation macros blanked
  (``__THROW``, ``__BEGIN_DECLS``, ``_GLIBCXX_VISIBILITY(default)``, ``V8_EXPORT``, ``*_API``, trailing
  ``) G_GNUC_DEPRECATED``, ``STACK_OF(T)``, object-like macros the file defines as empty or as a
  storage class, e.g. zlib's ``local``) while value macros in operand position stay, GNU/C++ corners
  the grammar lacks rewritten in place (``[[attr]]``, ``= delete``, ``__decltype``, ``->*``…), and an
  error node made only of one macro-like identifier (optionally with arguments) is blanked and the
  file reparsed. Blanking keeps byte offsets, so error locations stay true.
* **other tree-sitter languages** — reject on any ``MISSING`` node or when the error
  bytes exceed ``max_error_fraction`` of the file.

A verdict carries the rule and the value that tripped it (error byte fraction and the
line of the first error) so the rejects file can say why (``syntax_error_<language>``).
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from functools import cache

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Filter, Reject
from codekiln.workloads.data.document import Document

TREE_SITTER_LANGUAGES = (
    "python",
    "java",
    "c",
    "cpp",
    "javascript",
    "typescript",
    "go",
    "rust",
    "bash",
    "ruby",
    "php",
    "csharp",
    "kotlin",
    "scala",
    "lua",
    "swift",
)


@dataclass(frozen=True)
class SyntaxVerdict:
    """Whether a file parses, and if not: the error byte fraction and the first error's line."""

    ok: bool
    error_fraction: float = 0.0
    first_error_line: int = 0
    detail: str = ""


@cache
def _parser(name: str):
    from tree_sitter_language_pack import get_parser

    return get_parser(name)


def _error_spans(root) -> tuple[list[tuple[int, int]], int]:
    """(byte spans of ERROR nodes, number of MISSING nodes) under ``root`` (pruned walk)."""
    spans: list[tuple[int, int]] = []
    missing = 0
    stack = [root]
    while stack:
        node = stack.pop()
        if node.is_missing:
            missing += 1
            spans.append((node.start_byte, node.end_byte))
            continue
        if node.is_error:
            spans.append((node.start_byte, node.end_byte))
            continue
        if node.has_error:
            stack.extend(node.children)
    return spans, missing


def _verdict(data: bytes, spans: list[tuple[int, int]], missing: int, max_error_fraction: float) -> SyntaxVerdict:
    if not spans:
        return SyntaxVerdict(True)
    covered = sum(e - s for s, e in _merge(spans))
    frac = covered / max(len(data), 1)
    first = min(s for s, _ in spans)
    line = data.count(b"\n", 0, first) + 1
    ok = missing == 0 and frac <= max_error_fraction
    what = f"{missing} missing" if missing else "error nodes"
    return SyntaxVerdict(ok, round(frac, 5), line, f"{what}, first at line {line}")


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], e))
        else:
            out.append((s, e))
    return out


def tree_sitter_check(text: str, language: str, path: str = "", max_error_fraction: float = 0.0) -> SyntaxVerdict:
    """Plain tree-sitter verdict: no MISSING nodes and error bytes ≤ ``max_error_fraction``."""
    grammar = "tsx" if language == "typescript" and path.endswith(".tsx") else language
    data = text.encode("utf-8", "surrogateescape")
    spans, missing = _error_spans(_parser(grammar).parse(data).root_node)
    return _verdict(data, spans, missing, max_error_fraction)


def tree_sitter_ok(text: str, language: str, path: str = "") -> bool:
    """True when the tree-sitter grammar parses ``text`` without ERROR/MISSING nodes."""
    return tree_sitter_check(text, language, path).ok


def python_ok(text: str) -> bool:
    """True when CPython compiles ``text`` (bytes, so a coding cookie is honoured as in a real import)."""
    return python_check(text).ok


def python_check(text: str) -> SyntaxVerdict:
    """CPython's parser; the verdict names the line of the error."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text.encode("utf-8", "surrogateescape"))
    except SyntaxError as exc:
        return SyntaxVerdict(False, 0.0, exc.lineno or 0, f"{exc.msg}")
    except (ValueError, UnicodeError, MemoryError, RecursionError) as exc:
        return SyntaxVerdict(False, 0.0, 0, type(exc).__name__)
    return SyntaxVerdict(True)


_BASH_LINE = re.compile(r"line (\d+):")


def bash_check(text: str, timeout: float = 10.0) -> SyntaxVerdict:
    """``bash -n`` (parse only, nothing runs); falls back to tree-sitter-bash without bash."""
    bash = shutil.which("bash")
    if bash is None:
        return tree_sitter_check(text, "bash")
    try:
        proc = subprocess.run(
            [bash, "-n"],
            input=text.encode("utf-8", "surrogateescape"),
            capture_output=True,
            timeout=timeout,
            env={"PATH": "/usr/bin:/bin", "LC_ALL": "C"},
        )
    except subprocess.TimeoutExpired:
        return SyntaxVerdict(False, 0.0, 0, "bash -n timed out")
    if proc.returncode == 0:
        return SyntaxVerdict(True)
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    m = _BASH_LINE.search(err[0]) if err else None
    return SyntaxVerdict(False, 0.0, int(m.group(1)) if m else 0, err[-1][-200:] if err else "bash -n failed")


def syntax_check(text: str, language: str, path: str = "", *, max_error_fraction: float = 0.0) -> SyntaxVerdict:
    """The per-language policy above."""
    if language == "python":
        return python_check(text)
    if language == "bash":
        return bash_check(text)
    if language in ("c", "cpp"):
        from codekiln.workloads.data.c_syntax import c_check  # imports this module's tree-sitter helpers

        verdict = c_check(text, language, max_error_fraction)
        if not verdict.ok and language == "c":  # C++ parts behind macros derived from __cplusplus (ICU, NSPR)
            alt = c_check(text, "cpp", max_error_fraction)
            if alt.ok:
                return alt
        return verdict
    return tree_sitter_check(text, language, path, max_error_fraction)


class SyntaxFilter(Filter):
    """Keep documents whose language parses; other languages pass unless ``drop_unsupported``."""

    name = "syntax_filter"
    requires = ("tree_sitter_language_pack",)

    Params = step_params.SyntaxFilterParams

    def keep(self, doc: Document) -> bool | str:
        lang = doc.metadata.get("language")
        if lang not in self.params.languages:
            return "unsupported_language" if self.params.drop_unsupported else True
        path = str(doc.metadata.get("path", ""))
        plain = (lang == "python" and self.params.python_parser == "tree_sitter") or (
            lang == "bash" and self.params.bash_parser == "tree_sitter"
        )
        if plain:
            v = tree_sitter_check(doc.text, lang, path)
        else:
            v = syntax_check(doc.text, lang, path, max_error_fraction=self.params.max_error_fraction)
        if v.ok:
            return True
        value = {"line": v.first_error_line, "error_fraction": v.error_fraction, "detail": v.detail}
        return Reject(f"syntax_error_{lang}", value)
