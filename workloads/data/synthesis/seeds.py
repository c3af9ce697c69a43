"""Seed snippets (Seed-Coder): code units with their surrounding context from code files, notebooks, Markdown.

* Python files: every top-level function and class (``ast``), with the module's docstring and imports
  as context; other languages: blocks between blank-line-separated paragraphs.
* Jupyter notebooks (``.ipynb`` JSON): each code cell, with the Markdown cells before it as context.
* Markdown: each fenced code block, with the prose before it as context.

One output document per snippet: ``text`` = the code; ``metadata``: ``kind``, ``language``,
``context``, ``source_id``, ``path``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable, Iterator

from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.synthesis.common import code_blocks
from codekiln.workloads.data.synthesis.params import SeedSnippetsParams


def _python_units(text: str) -> list[tuple[str, str]]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    lines = text.splitlines(keepends=True)
    header = []
    doc = ast.get_docstring(tree)
    if doc:
        header.append(f'"""{doc}"""')
    header += ["".join(lines[n.lineno - 1:n.end_lineno]).rstrip() for n in tree.body
               if isinstance(n, ast.Import | ast.ImportFrom)]
    context = "\n".join(header)
    units = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            start = min([node.lineno] + [d.lineno for d in node.decorator_list])
            units.append(("".join(lines[start - 1:node.end_lineno]), context))
    return units


def _paragraph_units(text: str) -> list[tuple[str, str]]:
    blocks = [b for b in text.split("\n\n") if b.strip()]
    return [(b + "\n", "\n\n".join(blocks[max(0, i - 1):i])) for i, b in enumerate(blocks)]


def _notebook_units(text: str) -> list[tuple[str, str]]:
    nb = json.loads(text)
    units, prose = [], []
    for cell in nb.get("cells", []):
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        if cell.get("cell_type") == "markdown":
            prose.append(src)
        elif cell.get("cell_type") == "code" and src.strip():
            units.append((src if src.endswith("\n") else src + "\n", "\n\n".join(prose[-2:])))
            prose = []
    return units


def _markdown_units(text: str) -> list[tuple[str, str, str]]:
    out, pos = [], 0
    import re

    for m in re.finditer(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)```", text, re.S):
        prose = text[pos:m.start()].strip()
        lang = code_blocks(m.group(0))[0][0] if m.group(1) else "python"
        out.append((m.group(2), prose, lang))
        pos = m.end()
    return out


class SeedSnippets(Step):
    """Documents (files, notebooks, Markdown) → one seed document per code snippet with its context."""

    name = "seed_snippets"
    Params = SeedSnippetsParams

    def units(self, doc: Document) -> tuple[str, list[tuple[str, str, str]]]:
        path = str(doc.metadata.get("path", doc.id))
        lang = str(doc.metadata.get("language") or "")
        if path.endswith(".ipynb"):
            return "notebook", [(c, ctx, "python") for c, ctx in _notebook_units(doc.text)]
        if path.endswith((".md", ".markdown")) or lang == "markdown":
            return "markdown", _markdown_units(doc.text)
        if lang == "python" or path.endswith(".py"):
            return "code", [(c, ctx, "python") for c, ctx in _python_units(doc.text)]
        return "code", [(c, ctx, lang or "text") for c, ctx in _paragraph_units(doc.text)]

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        p = self.params
        for doc in docs:
            try:
                kind, units = self.units(doc)
            except (ValueError, TypeError, AttributeError) as exc:  # a broken notebook JSON
                self.drop(doc, "unreadable_source", str(exc)[:200])
                continue
            kept = 0
            for code, context, lang in units:
                n = code.count("\n") + (0 if code.endswith("\n") else 1)
                if not p.min_lines <= n <= p.max_lines:
                    self.stats.counters["snippets_out_of_length"] += 1
                    continue
                yield Document(f"{doc.id}#s{kept}", code, {
                    "kind": kind, "language": lang, "context": context[-p.context_chars:] if p.context_chars else "",
                    "source_id": doc.id, "path": doc.metadata.get("path")})
                kept += 1
                if kept >= p.max_per_doc:
                    break
            if not kept:
                self.drop(doc, "no_snippet")
