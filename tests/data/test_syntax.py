"""Syntax filter on the whole CPython standard library and on nine tree-sitter languages."""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.registry import build_step
from codekiln.workloads.data.syntax import tree_sitter_ok


def _parses(data: bytes) -> bool:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(data)
    except (SyntaxError, ValueError):
        return False
    return True


def test_stdlib_unparseable_files_rejected_and_parseable_kept(stdlib_files: list[Path], tmp_path: Path) -> None:
    raw = {str(p): p.read_bytes() for p in stdlib_files}
    failing = {p for p, data in raw.items() if not _parses(data)}
    assert len(failing) >= 5, "the stdlib ships test files that do not parse"
    docs = [
        Document(p, data.decode("utf-8", "surrogateescape"), {"language": "python", "path": p})
        for p, data in raw.items()
    ]
    step = build_step("syntax_filter", {}, StageContext(tmp_path, "s"))
    kept = {d.id for d in step(docs, 0, 1)}
    rejected = set(raw) - kept
    assert rejected == failing
    assert step.stats.rejects == {"syntax_error_python": len(failing)}
    assert step.stats.docs_in == len(stdlib_files) and step.stats.docs_out == len(stdlib_files) - len(failing)


SAMPLES = {
    "python": ("def f(x):\n    return [i * 2 for i in x]\n", "def f(x:\n    return ]\n"),
    "java": ("class A { int f(int x) { return x + 1; } }\n", "class A { int f(int x) { return x + ; }\n"),
    "c": ('#include <stdio.h>\nint main(void) { printf("hi\\n"); return 0; }\n', "int main( { return 0 }\n"),
    "cpp": (
        "#include <vector>\nint f(std::vector<int>& v) { return v.size(); }\n",
        "int f(std::vector<int>& v { return; \n",
    ),
    "javascript": ("const f = (x) => x.map((y) => y * 2);\n", "const f = (x) => { x.map(( ;\n"),
    "typescript": (
        "function f(x: number[]): number { return x.length; }\n",
        "function f(x: number[]: number { return; \n",
    ),
    "go": ("package main\n\nfunc main() {\n\tx := 1\n\t_ = x\n}\n", "package main\n\nfunc main( {\n\tx := \n}\n"),
    "rust": ('fn main() { let v: Vec<i32> = vec![1, 2]; println!("{}", v.len()); }\n', "fn main() { let v = ; \n"),
    "bash": ('#!/bin/bash\nfor f in *.txt; do\n  echo "$f"\ndone\n', 'for f in *.txt; do\n  echo "$f"\n'),
}


@pytest.mark.parametrize("language", sorted(SAMPLES))
def test_tree_sitter_languages(language: str, tmp_path: Path) -> None:
    good, bad = SAMPLES[language]
    assert tree_sitter_ok(good, language) and not tree_sitter_ok(bad, language)
    step = build_step("syntax_filter", {"pythonParser": "tree_sitter"}, StageContext(tmp_path, "s"))
    docs = [Document("good", good, {"language": language}), Document("bad", bad, {"language": language})]
    assert [d.id for d in step(docs, 0, 1)] == ["good"]
    assert step.stats.rejects == {f"syntax_error_{language}": 1}
