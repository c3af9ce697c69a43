"""Syntax filter: drop files that do not parse (tree-sitter bundled grammars; CPython's parser for Python).

Python defaults to ``ast.parse`` on the file's bytes (the reference grammar: on the
1,790 stdlib files tree-sitter-python both misses 8 of the 9 unparseable files and
flags 2 valid ones). Set ``python_parser: tree_sitter`` to use the grammar instead.
Rejects are counted per language (``syntax_error_<language>``).
"""

from __future__ import annotations

import ast
import warnings
from functools import cache

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Filter
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


@cache
def _parser(name: str):
    from tree_sitter_language_pack import get_parser

    return get_parser(name)


def tree_sitter_ok(text: str, language: str, path: str = "") -> bool:
    """True when the tree-sitter grammar parses ``text`` without ERROR/MISSING nodes."""
    grammar = "tsx" if language == "typescript" and path.endswith(".tsx") else language
    tree = _parser(grammar).parse(text.encode("utf-8", "surrogateescape"))
    return not tree.root_node.has_error


def python_ok(text: str) -> bool:
    """True when CPython compiles ``text`` (bytes, so a coding cookie is honoured as in a real import)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(text.encode("utf-8", "surrogateescape"))
    except (SyntaxError, ValueError, UnicodeError, MemoryError, RecursionError):
        return False
    return True


class SyntaxFilter(Filter):
    """Keep documents whose language parses; other languages pass unless ``drop_unsupported``."""

    name = "syntax_filter"
    requires = ("tree_sitter_language_pack",)

    Params = step_params.SyntaxFilterParams

    def keep(self, doc: Document) -> bool | str:
        lang = doc.metadata.get("language")
        if lang not in self.params.languages:
            return "unsupported_language" if self.params.drop_unsupported else True
        if lang == "python" and self.params.python_parser == "ast":
            ok = python_ok(doc.text)
        else:
            ok = tree_sitter_ok(doc.text, lang, str(doc.metadata.get("path", "")))
        return True if ok else f"syntax_error_{lang}"
