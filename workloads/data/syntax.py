"""Syntax filter: drop files with real syntax errors, not files a grammar cannot follow.

Per-language policy (each measured on real code that a real compiler or parser accepts,
with planted breakage; see ``tests/data/test_syntax_real.py`` and the README table):

* **python** — CPython's own parser (``ast.parse`` on the bytes, so coding cookies count).
* **bash** — ``bash -n`` (the shell's own parser) when ``bash`` is installed; tree-sitter
  otherwise. tree-sitter-bash rejects valid scripts (``for f do``, case patterns such as
  ``?*' '?*)``) and accepts a missing ``then``.
* **c / cpp** — tree-sitter on a *macro-aware* view of the file: preprocessor lines are
  blanked, one branch of every ``#if`` group is kept (``__cplusplus`` branches by language,
  ``#if 0`` skipped), annotation macros (``__THROW``, ``__BEGIN_DECLS``,
  ``_GLIBCXX_VISIBILITY(default)``, ``V8_EXPORT``, ``*_API``, object-like macros the file
  defines as empty or as a storage class, e.g. zlib's ``local``) are blanked, and an error
  node made only of one macro-like identifier (optionally with arguments) is blanked and
  the file reparsed. Blanking keeps byte offsets, so error locations stay true.
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


# ---------------------------------------------------------------- C / C++: a macro-aware view

# Annotation macros of widely used headers that expand to attributes, visibility or nothing.
KNOWN_C_MACROS = (
    "__THROW",
    "__THROWNL",
    "__NTH",
    "__wur",
    "__BEGIN_DECLS",
    "__END_DECLS",
    "__BEGIN_NAMESPACE_STD",
    "__END_NAMESPACE_STD",
    "__USING_NAMESPACE_STD",
    "__nonnull",
    "__attr_access",
    "__attr_dealloc",
    "__attr_dealloc_free",
    "__fortified_attr_access",
    "__restrict_arr",
    "__REDIRECT",
    "__REDIRECT_NTH",
    "__REDIRECT_NTHNL",
    "__glibc_macro_warning",
    "__errordecl",
    "__warndecl",
    "__flexarr",
    "__asm__",
    "__extension__",
    "__LEAF",
    "__LEAF_ATTR",
    "__MATHCALL",
    "__MATHDECL",
    "_Noreturn",
    "__inline",
    "__always_inline",
    "__extern_inline",
    "__extern_always_inline",
    "__fortify_function",
    "__COLD",
    "__owur",
    "__try",
    "__catch",
    "__INDIRECT_RETURN",
    "__returns_twice",
    "__CFI_ADD_CHECK",
    "local",  # zlib: #define local static
    "WINAPI",
    "CALLBACK",
    "APIENTRY",
    "EXPORT",
    "Q_OBJECT",
    "Q_GADGET",
    "Q_DECL_EXPORT",
    "Q_DECL_IMPORT",
    "Q_INVOKABLE",
    "Q_SIGNALS",
    "Q_SLOTS",
)
_KNOWN_MACRO_PATTERN = re.compile(
    rb"__attribute_\w+__|__attr_\w+|__glibc_\w+|__\w+_attr__|_GLIBCXX\w*|_LIBCPP_\w+|__BEGIN_\w+|__END_\w+|"
    rb"__attribute__|__declspec|__asm__|__asm|__nonnull|__wur|__THROW\w*|__NTH\w*|__REDIRECT\w*|__LEAF\w*"
)
_MACRO_SHAPE = re.compile(
    r"^(?:__\w+|_[A-Z]\w*|[A-Z][A-Z0-9]*_(?:EXPORT|API|EXTERN|VISIBILITY|INLINE|DEPRECATED\w*|NOEXCEPT|"
    r"NORETURN|HIDDEN|PUBLIC|LOCAL|ATTR\w*|DECL\w*|CALL|CDECL|STDCALL|NODISCARD|CONSTEXPR|UNUSED|FORCEINLINE|"
    r"PURE|CONST|PRINTF\w*|FORMAT\w*|ALIGN\w*|PACKED|WARN\w*|MAYBE_UNUSED|FALLTHROUGH|THREAD_LOCAL|BEGIN\w*|END\w*)|"
    r"[A-Z][A-Z0-9_]{2,})$"
)
_C_KEYWORDS = frozenset(
    [
        "auto",
        "break",
        "case",
        "char",
        "const",
        "continue",
        "default",
        "do",
        "double",
        "else",
        "enum",
        "extern",
        "float",
        "for",
        "goto",
        "if",
        "inline",
        "int",
        "long",
        "register",
        "restrict",
        "return",
        "short",
        "signed",
        "sizeof",
        "static",
        "struct",
        "switch",
        "typedef",
        "union",
        "unsigned",
        "void",
        "volatile",
        "while",
        "_Bool",
        "_Complex",
        "_Atomic",
        "_Alignas",
        "_Alignof",
        "_Generic",
        "_Static_assert",
        "_Thread_local",
        "bool",
        "class",
        "namespace",
        "template",
        "typename",
        "public",
        "private",
        "protected",
        "virtual",
        "operator",
        "new",
        "delete",
        "this",
        "throw",
        "try",
        "catch",
        "using",
        "friend",
        "explicit",
        "mutable",
        "constexpr",
        "decltype",
        "noexcept",
        "nullptr",
        "static_assert",
        "thread_local",
        "alignas",
        "alignof",
        "consteval",
        "constinit",
        "concept",
        "requires",
        "co_await",
        "co_return",
        "co_yield",
        "override",
        "final",
        "__attribute__",
        "__declspec",
        "NULL",
        "TRUE",
        "FALSE",
        "EOF",
    ]
)
_STORAGE_WORDS = frozenset(
    ["static", "extern", "inline", "const", "volatile", "register", "__inline", "__inline__", "__forceinline"]
)
_DIRECTIVE = re.compile(rb"^[ \t]*#[ \t]*(\w*)(.*)$")
_DEFINE = re.compile(rb"^[ \t]*#[ \t]*define[ \t]+([A-Za-z_]\w*)(?![\w(])[ \t]*(.*)$")
_IDENT = re.compile(rb"[A-Za-z_]\w*")
_CPLUSPLUS = re.compile(rb"__cplusplus")


def _blank(buf: bytearray, start: int, end: int) -> None:
    """Replace ``buf[start:end]`` by spaces, keeping newlines (so offsets and lines stay true)."""
    for i in range(start, end):
        if buf[i] not in (10, 13):
            buf[i] = 32


def _condition(kind: bytes, rest: bytes, cpp: bool) -> bool | None:
    """Truth of an ``#if``-family condition when we can tell (``__cplusplus``, ``0``/``1``), else None."""
    rest = rest.split(b"//")[0].split(b"/*")[0].strip()
    if _CPLUSPLUS.search(rest) and b"&&" not in rest and b"||" not in rest:
        negated = kind == b"ifndef" or rest.startswith(b"!")
        if b">" in rest or b"<" in rest:  # `#if __cplusplus >= 201103L`: a C++ feature test
            return cpp and not negated
        return cpp != negated
    if kind == b"if" and rest in (b"0", b"(0)"):
        return False
    if kind == b"if" and rest in (b"1", b"(1)"):
        return True
    return None


def c_view(text: str, cpp: bool) -> tuple[bytes, set[bytes]]:
    """The bytes tree-sitter sees for C/C++, and the object-like macros the file defines as annotations.

    Directives are blanked; in each ``#if`` group one branch is kept (a decidable condition
    picks it, else the first); inactive branches are blanked.
    """
    data = bytearray(text.encode("utf-8", "surrogateescape"))
    annotation_macros: set[bytes] = set()
    # stack of [this branch active, some branch taken, parent active]
    stack: list[list[bool]] = []
    active = True
    pos = 0
    n = len(data)
    while pos < n:
        end = data.find(b"\n", pos)
        end = n if end < 0 else end
        while end < n and end > pos and data[end - 1 - (data[end - 1] == 13)] == 92:  # `\` continuation
            nxt = data.find(b"\n", end + 1)
            end = n if nxt < 0 else nxt
        line = bytes(data[pos:end])
        m = _DIRECTIVE.match(line.split(b"\n", 1)[0])
        if m and line.rfind(b"/*") > line.rfind(b"*/"):  # a comment opened on the directive line goes on
            close = data.find(b"*/", end)
            end = n if close < 0 else (data.find(b"\n", close) if data.find(b"\n", close) >= 0 else n)
            line = bytes(data[pos:end])
        if m:
            kind, rest = m.group(1), m.group(2)
            if kind in (b"if", b"ifdef", b"ifndef"):
                cond = _condition(kind, rest, cpp)
                this = cond if cond is not None else True
                stack.append([active and this, this, active])
                active = active and this
            elif kind == b"elif" and stack:
                top = stack[-1]
                cond = _condition(b"if", rest, cpp)
                this = (not top[1]) and (cond if cond is not None else False)
                top[0], top[1] = top[2] and this, top[1] or this
                active = top[0]
            elif kind == b"else" and stack:
                top = stack[-1]
                this = not top[1]
                top[0], top[1] = top[2] and this, True
                active = top[0]
            elif kind == b"endif" and stack:
                active = stack.pop()[2]
            elif kind == b"define":
                d = _DEFINE.match(line.replace(b"\\\n", b" "))
                if d:
                    body = set(d.group(2).split(b"//")[0].split())
                    if not body or body <= {w.encode() for w in _STORAGE_WORDS}:
                        annotation_macros.add(d.group(1))
            _blank(data, pos, end)
        elif not active:
            _blank(data, pos, end)
        pos = end + 1
    return bytes(data), annotation_macros


def _skip_args(data: bytearray, i: int) -> int:
    """If ``data[i:]`` (after spaces) opens ``(``, the index after its balanced ``)``; else ``i``."""
    j = i
    while j < len(data) and data[j] in (32, 9, 10, 13):
        j += 1
    if j >= len(data) or data[j] != 40:
        return i
    depth = 0
    for k in range(j, min(len(data), j + 4000)):
        if data[k] == 40:
            depth += 1
        elif data[k] == 41:
            depth -= 1
            if depth == 0:
                return k + 1
    return i


_LONE_MACRO_LINE = re.compile(rb"^[ \t]*([A-Z_][A-Z0-9_]{2,})[ \t]*(\([^\n;{}]*\))?[ \t]*$", re.M)


_TYPE_WORDS = (
    rb"(?:void|int|char|short|long|unsigned|signed|float|double|const|static|extern|inline|struct|enum|union|"
    rb"class|bool|virtual|explicit|typedef)\b"
)
# an ALL-CAPS word starting a declaration and followed by a type (`U_CAPI int32_t f(`, `OSSL_DEPRECATEDIN_3_0 void`)
_LEADING_MACRO = re.compile(
    rb"(?:^|(?<=[;{}]))[ \t]*([A-Z][A-Z0-9_]{2,})(?=[ \t\n]+(?:[A-Za-z_]\w*[ \t\n]+[*&]*[ \t\n]*[A-Za-z_]|"
    + _TYPE_WORDS
    + rb"))",
    re.M,
)
# an ALL-CAPS word between a return type and the function name (`int32_t U_EXPORT2 f(`, `char * SDLCALL f(`)
_MIDDLE_MACRO = re.compile(rb"(?<=[\w*&])[ \t\n]+([A-Z][A-Z0-9_]{2,})(?=[ \t\n]+[A-Za-z_]\w*[ \t\n]*\()")
# `class V8_EXPORT Value : …`, `class U_COMMON_API Appendable {`
_CLASS_MACRO = re.compile(
    rb"\b(?:class|struct|union)[ \t\n]+([A-Z][A-Z0-9_]{2,})(?=[ \t\n]+[A-Za-z_]\w*[ \t\n]*(?:[:{]|final\b))"
)


def _blank_macros(data: bytearray, names: set[bytes]) -> None:
    """Blank known annotation macros (with their arguments) and lines that are only a macro call."""
    snapshot = bytes(data)
    for pattern in (_LEADING_MACRO, _MIDDLE_MACRO, _CLASS_MACRO):
        for m in pattern.finditer(snapshot):
            if m.group(1).decode() not in _C_KEYWORDS:
                _blank(data, m.start(1), m.end(1))
    for m in re.finditer(rb"\b(extern)[ \t\n]+template\b", bytes(data)):  # explicit instantiation declarations
        _blank(data, m.start(1), m.end(1))
    snapshot = bytes(data)
    for m in _IDENT.finditer(snapshot):
        word = m.group(0)
        if word in names or _KNOWN_MACRO_PATTERN.fullmatch(word):
            _blank(data, m.start(), _skip_args(data, m.end()))
    for m in _LONE_MACRO_LINE.finditer(snapshot):  # `PR_BEGIN_EXTERN_C`, `Q_OBJECT`, `DECLARE_X(a, b)`
        before = bytes(data[max(0, m.start() - 400) : m.start()]).rstrip()
        if m.group(1).decode() not in _C_KEYWORDS and (not before or before[-1:] in (b";", b"{", b"}", b"/")):
            _blank(data, m.start(1), m.end())


def _macro_only(data: bytes, start: int, end: int) -> tuple[int, int] | None:
    """The span of a lone macro-like identifier (with optional arguments) inside an error node."""
    chunk = data[start:end]
    m = re.match(rb"\s*([A-Za-z_]\w*)", chunk)
    if not m:
        return None
    word = m.group(1).decode()
    if word in _C_KEYWORDS or not _MACRO_SHAPE.match(word):
        return None
    after = _skip_args(bytearray(data), start + m.end())
    rest = data[after:end].strip()
    if rest and not _MACRO_SHAPE.match(rest.decode("utf-8", "replace")):
        return None
    return start + m.start(1), (after if not rest else end)


def _last_ident(data: bytes, lo: int, hi: int) -> re.Match | None:
    """The last identifier in ``data[lo:hi]``."""
    last = None
    for last in _IDENT.finditer(data, max(0, lo), hi):  # noqa: B007
        pass
    return last


def c_check(text: str, language: str, max_error_fraction: float = 0.0, rounds: int = 6) -> SyntaxVerdict:
    """Macro-aware tree-sitter verdict for C (``language='c'``) or C++ (``'cpp'``)."""
    cpp = language == "cpp"
    view, defined = c_view(text, cpp)
    buf = bytearray(view)
    _blank_macros(buf, {m.encode() for m in KNOWN_C_MACROS} | defined)
    parser = _parser("cpp" if cpp else "c")
    for _ in range(rounds):
        data = bytes(buf)
        spans, missing = _error_spans(parser.parse(data).root_node)
        if not spans:
            return SyntaxVerdict(True)
        fixed = False
        for s, e in spans:
            if s == e:  # MISSING: the identifier just before it
                w = _last_ident(data, s - 200, s)
                span = _macro_only(data, w.start(), w.end()) if w and not data[w.end() : s].strip() else None
            else:
                span = _macro_only(data, s, e)
                prev = _last_ident(data, s - 100, s)
                if (
                    span is None
                    and prev
                    and not data[prev.end() : s].strip()
                    and re.fullmatch(rb"[A-Z][A-Z0-9_]{2,}", prev.group(0))
                ):  # `OSSL_DEPRECATEDIN_3_0 void f(void);`: the macro is taken for a type, the error follows
                    span = (prev.start(), prev.end())
                if span is None and e - s < 200:  # an error that starts just before a macro (`int V8_EXPORT f`)
                    for w in _IDENT.finditer(data, s, e):
                        span = _macro_only(data, w.start(), w.end())
                        if span:
                            break
            if span:
                _blank(buf, *span)
                fixed = True
        if not fixed:
            break
    data = bytes(buf)
    spans, missing = _error_spans(parser.parse(data).root_node)
    return _verdict(data, spans, missing, max_error_fraction)


def syntax_check(text: str, language: str, path: str = "", *, max_error_fraction: float = 0.0) -> SyntaxVerdict:
    """The per-language policy above."""
    if language == "python":
        return python_check(text)
    if language == "bash":
        return bash_check(text)
    if language in ("c", "cpp"):
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
