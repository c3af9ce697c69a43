"""Language identification: extension, then shebang, then content (``.h``), then pygments.

Order: a known extension decides (except ``.h``); any other name — no extension, an
unknown one, or dots inside the name (``configure.ac.in``, ``run.tests``) — is read for a
``#!`` line (``env -S`` and version suffixes handled); ``.h`` is C++ when its content uses
C++-only syntax (``namespace``, ``template<``, ``class X {``, ``::``, ``public:``), else C;
finally, when ``fallback=True``, pygments' maintained lexer guesser names the language of
what is left (filename patterns first, then content analysis), mapped onto our names.
"""

from __future__ import annotations

import re

EXTENSIONS: dict[str, str] = {
    ".py": "python",
    ".pyi": "python",
    ".java": "java",
    ".c": "c",
    ".h": "c",
    ".cc": "cpp",
    ".cpp": "cpp",
    ".cxx": "cpp",
    ".hpp": "cpp",
    ".hh": "cpp",
    ".hxx": "cpp",
    ".ipp": "cpp",
    ".tcc": "cpp",
    ".js": "javascript",
    ".mjs": "javascript",
    ".cjs": "javascript",
    ".jsx": "javascript",
    ".ts": "typescript",
    ".tsx": "typescript",
    ".mts": "typescript",
    ".cts": "typescript",
    ".go": "go",
    ".rs": "rust",
    ".sh": "bash",
    ".bash": "bash",
    ".zsh": "bash",
    ".rb": "ruby",
    ".php": "php",
    ".kt": "kotlin",
    ".kts": "kotlin",
    ".scala": "scala",
    ".cs": "csharp",
    ".swift": "swift",
    ".lua": "lua",
    ".pl": "perl",
    ".pm": "perl",
    ".r": "r",
    ".sql": "sql",
    ".md": "markdown",
    ".rst": "rst",
    ".toml": "toml",
    ".yaml": "yaml",
    ".yml": "yaml",
    ".json": "json",
    ".html": "html",
    ".htm": "html",
    ".css": "css",
}
SHEBANGS: dict[str, str] = {
    "python": "python",
    "python3": "python",
    "python2": "python",
    "pypy": "python",
    "pypy3": "python",
    "bash": "bash",
    "sh": "bash",
    "dash": "bash",
    "ksh": "bash",
    "zsh": "bash",
    "node": "javascript",
    "nodejs": "javascript",
    "deno": "typescript",
    "ts-node": "typescript",
    "ruby": "ruby",
    "perl": "perl",
    "php": "php",
    "lua": "lua",
    "Rscript": "r",
}
# pygments lexer names → ours
PYGMENTS_NAMES: dict[str, str] = {
    "Python": "python",
    "Python 2.x": "python",
    "Java": "java",
    "C": "c",
    "C++": "cpp",
    "JavaScript": "javascript",
    "TypeScript": "typescript",
    "Go": "go",
    "Rust": "rust",
    "Bash": "bash",
    "Shell": "bash",
    "Ruby": "ruby",
    "PHP": "php",
    "Kotlin": "kotlin",
    "Scala": "scala",
    "C#": "csharp",
    "Swift": "swift",
    "Lua": "lua",
    "Perl": "perl",
    "R": "r",
    "SQL": "sql",
    "Markdown": "markdown",
    "reStructuredText": "rst",
    "TOML": "toml",
    "YAML": "yaml",
    "JSON": "json",
    "HTML": "html",
    "CSS": "css",
    "Makefile": "makefile",
    "CMake": "cmake",
}
_SHEBANG = re.compile(r"^#!\s*(\S+)(?:\s+(-S\s+)?(\S+))?")
_CPP_ONLY = re.compile(
    r"^\s*(?:namespace\s+\w*\s*\{|template\s*<|class\s+\w+\s*(?::\s*(?:public|private|protected)\b[^{;]*)?\{|"
    r"(?:public|private|protected)\s*:|using\s+namespace\b|#\s*include\s*<(?:iostream|string|vector|memory|map)>)"
    r"|\w::\w|\bstd::|\bnullptr\b|\bconstexpr\b|\btypename\b",
    re.M,
)


def shebang_language(text: str | None) -> str | None:
    """The language a ``#!`` first line names (``/usr/bin/env [-S] prog``, ``python3.11`` → python)."""
    if not text or not text.startswith("#!"):
        return None
    m = _SHEBANG.match(text[:200])
    if not m:
        return None
    prog = m.group(1).rsplit("/", 1)[-1]
    if prog == "env" and m.group(3):
        prog = m.group(3).rsplit("/", 1)[-1]
    if prog not in SHEBANGS:
        prog = re.sub(r"[\d.]+$", "", prog)
    return SHEBANGS.get(prog)


def header_language(text: str) -> str:
    """``cpp`` when a ``.h`` file uses C++-only syntax, else ``c``."""
    from codekiln.workloads.data.c_syntax import c_view  # C++ behind `#ifdef __cplusplus` does not count

    src = _strip_c_comments(text[:200_000])
    as_c = c_view(src, cpp=False)[0].decode("utf-8", "replace")
    if _CPP_ONLY.search(as_c):
        return "cpp"
    as_cpp = c_view(src, cpp=True)[0].decode("utf-8", "replace")
    c_code, cpp_code = len("".join(as_c.split())), len("".join(as_cpp.split()))
    # a header that is all `#if __cplusplus >= …` (libstdc++'s <bits/chrono.h>) is C++
    return "cpp" if c_code < 0.05 * cpp_code and _CPP_ONLY.search(as_cpp) else "c"


_C_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)


def _strip_c_comments(text: str) -> str:
    return _C_COMMENT.sub(" ", text)


def pygments_language(path: str, text: str) -> str | None:
    """pygments' guess (filename, then content) mapped to our names; None if unknown or pygments is absent."""
    try:
        from pygments.lexers import guess_lexer, guess_lexer_for_filename
        from pygments.util import ClassNotFound
    except ImportError:
        return None
    name = path.rsplit("/", 1)[-1]
    try:
        lexer = guess_lexer_for_filename(name, text[:20_000])
    except ClassNotFound:
        try:
            lexer = guess_lexer(text[:20_000])
        except ClassNotFound:
            return None
        # content-only guesses with a weak score are noise (plain text scores everything low)
        if type(lexer).analyse_text(text[:20_000]) < 0.3:
            return None
    return PYGMENTS_NAMES.get(lexer.name)


def language_of(path: str, text: str | None = None, *, fallback: bool = False) -> str | None:
    """The language of ``path``: extension, then shebang, ``.h`` by content, then pygments (``fallback``)."""
    name = path.rsplit("/", 1)[-1]
    dot = name.rfind(".")
    ext = name[dot:].lower() if dot > 0 else ""
    lang = EXTENSIONS.get(ext)
    if lang == "c" and ext == ".h" and text is not None:
        return header_language(text)
    if lang:
        return lang
    lang = shebang_language(text)
    if lang or not fallback or not text:
        return lang
    return pygments_language(path, text)
