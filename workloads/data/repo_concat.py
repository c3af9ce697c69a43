"""Repository-level samples: files concatenated in dependency order; long-context selection.

Python (imports), Java (imports) and C/C++ (``#include "..."``) files are ordered
DeepSeek-Coder style: build the dependency graph, repeatedly emit the remaining file
with the minimum in-degree (ties by path; cycles tolerated), one sample per connected
component. Other languages go in a seeded random order, one sample per repository.
Each file is preceded by ``<|file_sep|>path``; each sample starts with ``<|repo_name|>``.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterable, Iterator

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Filter, Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.special_tokens import FILE_SEP, REPO_NAME

ORDERED = {"python", "java", "c", "cpp"}
_PY_IMPORT = re.compile(
    r"^[ \t]*(?:from[ \t]+(\.*[\w.]*)[ \t]+import[ \t]+(\([^)]*\)|[\w \t,*]+)"
    r"|import[ \t]+([\w.]+(?:[ \t]*,[ \t]*[\w.]+)*))",
    re.M,
)
_JAVA_IMPORT = re.compile(r"^\s*import\s+(?:static\s+)?([\w.]+)(?:\.\*)?\s*;", re.M)
_INCLUDE = re.compile(r'^\s*#\s*include\s*"([^"]+)"', re.M)


def _py_modules(paths: list[str]) -> dict[str, str]:
    """Module name (every dotted suffix of the path) → path."""
    out: dict[str, str] = {}
    for p in sorted(paths, key=lambda x: (x.count("/"), x)):
        parts = p[:-3].split("/")
        if parts[-1] == "__init__":
            parts = parts[:-1]
        for i in range(len(parts)):
            out.setdefault(".".join(parts[i:]), p)
    return out


def _py_deps(path: str, text: str, modules: dict[str, str]) -> set[str]:
    deps: set[str] = set()
    pkg = path.split("/")[:-1]
    for frm, names, imp in _PY_IMPORT.findall(text):
        cands: list[str] = []
        if imp:
            cands = [m.strip() for m in imp.split(",")]
        elif frm:
            dots = len(frm) - len(frm.lstrip("."))
            base = frm.lstrip(".")
            if dots:
                prefix = pkg[: len(pkg) - (dots - 1)] if dots - 1 <= len(pkg) else []
                base = ".".join([*prefix, base] if base else prefix)
            for n in re.split(r"[\s,()]+", names):
                if n and n != "*":  # `from pkg import mod` depends on pkg.mod, else on pkg itself
                    full = f"{base}.{n}" if base else n
                    cands.append(full if full in modules else base)
        for c in cands:
            while c:
                if c in modules and modules[c] != path:
                    deps.add(modules[c])
                    break
                c = c.rpartition(".")[0]
    return deps


def dependencies(files: dict[str, str], language: str) -> dict[str, set[str]]:
    """path → paths it depends on (within the repository)."""
    paths = list(files)
    if language == "python":
        modules = _py_modules(paths)
        return {p: _py_deps(p, t, modules) for p, t in files.items()}
    deps: dict[str, set[str]] = {p: set() for p in paths}
    if language == "java":
        by_class = {p[:-5].replace("/", "."): p for p in paths}
        for p, t in files.items():
            for name in _JAVA_IMPORT.findall(t):
                deps[p] |= {
                    q for cls, q in by_class.items() if q != p and (cls.endswith(name) or cls.endswith("." + name))
                }
        return deps
    for p, t in files.items():  # c / cpp
        for inc in _INCLUDE.findall(t):
            deps[p] |= {q for q in paths if q != p and (q == inc or q.endswith("/" + inc))}
    return deps


def dependency_order(deps: dict[str, set[str]]) -> list[list[str]]:
    """Connected components, each in minimum-in-degree order (dependencies first, cycles tolerated)."""
    nodes = sorted(deps)
    adj: dict[str, set[str]] = {n: set() for n in nodes}
    for a, ds in deps.items():
        for b in ds:
            adj[a].add(b)
            adj[b].add(a)
    seen: set[str] = set()
    components = []
    for n in nodes:
        if n in seen:
            continue
        stack, comp = [n], []
        seen.add(n)
        while stack:
            x = stack.pop()
            comp.append(x)
            for y in adj[x] - seen:
                seen.add(y)
                stack.append(y)
        remaining = set(comp)
        indeg = {x: len(deps[x] & remaining) for x in comp}
        order = []
        while remaining:
            x = min(remaining, key=lambda v: (indeg[v], v))
            order.append(x)
            remaining.discard(x)
            for y in remaining:
                if x in deps[y]:
                    indeg[y] -= 1
        components.append(order)
    return components


def render(repo: str, paths: list[str], files: dict[str, str]) -> str:
    return f"{REPO_NAME}{repo}\n" + "".join(f"{FILE_SEP}{p}\n{files[p]}" for p in paths)


class RepoConcat(Step):
    """File-level documents (``metadata.repo``, ``path``, ``language``) → repository-level samples."""

    name = "repo_concat"

    Params = step_params.RepoConcatParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        repos: dict[str, list[Document]] = {}
        for d in docs:
            repos.setdefault(str(d.metadata.get("repo", "")), []).append(d)
        for repo, rdocs in repos.items():
            by_lang: dict[str, dict[str, str]] = {}
            for d in rdocs:
                by_lang.setdefault(str(d.metadata.get("language")), {})[str(d.metadata.get("path", d.id))] = d.text
            meta = {k: v for k, v in rdocs[0].metadata.items() if k not in ("path", "language")}
            for lang, files in sorted(by_lang.items()):
                if lang in ORDERED:
                    groups = dependency_order(dependencies(files, lang))
                else:
                    order = sorted(files)
                    random.Random(zlib.crc32(f"{self.params.seed}/{repo}".encode())).shuffle(order)
                    groups = [order]
                for i, paths in enumerate(groups):
                    yield Document(
                        f"{repo}#{lang}#{i}",
                        render(repo, paths, files),
                        {
                            **meta,
                            "language": lang,
                            "files": paths,
                            "order": "dependency" if lang in ORDERED else "random",
                        },
                    )


class LongContextFilter(Filter):
    """Keep samples of at least ``min_tokens`` tokens (tokenizer if given, else ``chars / chars_per_token``)."""

    name = "long_context_filter"

    Params = step_params.LongContextFilterParams

    def keep(self, doc: Document) -> bool | str:
        if self.params.tokenizer:
            if not hasattr(self, "_tok"):
                from codekiln.workloads.data.tokenizer import load_tokenizer

                self._tok = load_tokenizer(self.ctx.resolve(self.params.tokenizer))
            n = len(self._tok.encode(doc.text).ids)
        else:
            n = len(doc.text) / self.params.chars_per_token
        return True if n >= self.params.min_tokens else "too_short"
