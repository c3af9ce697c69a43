"""Code-web extraction with trafilatura on a real page: code blocks kept verbatim, page chrome dropped."""

from __future__ import annotations

from pathlib import Path

import pytest

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.recall import _pre_blocks, html_to_text
from codekiln.workloads.data.registry import build_step

BOOK = sorted(Path("/root/.rustup/toolchains").glob("*/share/doc/rust/html/book/ch03-05-control-flow.html"))


@pytest.mark.skipif(not BOOK, reason="the Rust book (rustup docs) is not installed on this machine")
def test_trafilatura_keeps_code_and_drops_chrome(tmp_path: Path) -> None:
    page = BOOK[0].read_text(encoding="utf-8")
    step = build_step("html_to_text", {}, StageContext(tmp_path, "h"))
    (doc,) = list(step(iter([Document("p", page, {"path": "ch03.html"})]), 0, 1))
    old = html_to_text(page)
    assert "Keyboard shortcuts" in old and "Keyboard shortcuts" not in doc.text  # the help overlay
    code_lines = [ln.strip() for b in _pre_blocks(page) for ln in b.splitlines() if ln.strip()]
    assert len(code_lines) > 30
    kept = sum(ln in doc.text for ln in code_lines) / len(code_lines)
    assert kept >= 0.97, kept
    assert "```" in doc.text and "`if`" in doc.text  # fenced blocks and inline code
    assert len(doc.text) < len(old)


def test_pre_blocks_missed_by_the_extractor_are_appended() -> None:
    from codekiln.workloads.data.recall import extract_main

    body = "<p>" + "Some long explanatory prose about loops and conditions. " * 20 + "</p>"
    page = f"<html><body><article>{body}<pre>fn main() {{\n    let x = 1;\n}}</pre></article></body></html>"
    assert "let x = 1;" in extract_main(page)
