"""Commits → code-change prediction samples (Seed-Coder).

Prompt = commit message + README + directory tree + the top-``k`` BM25 files (bm25s,
query = message) of the pre-commit snapshot; target = the changed paths and the diff.
The document text is ``prompt + target``; ``metadata.target_offset`` marks where the
target starts. Huge, binary and vendored diffs are dropped (counted per reason).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.git_reader import BlobReader, list_tree
from codekiln.workloads.data.lang import language_of
from codekiln.workloads.special_tokens import FILE_SEP

VENDORED = step_params.VENDORED


CommitParams = step_params.CommitParams


def rejection(meta: dict, diff: str, p: CommitParams) -> str | None:
    """Why a commit is not a training sample, or None."""
    files = meta.get("files", [])
    if not files:
        return "empty_diff"
    if any(f["binary"] for f in files):
        return "binary_diff"
    if len(files) > p.max_changed_files:
        return "too_many_files"
    if any(any(fnmatch.fnmatch(f["path"], g) for g in p.vendored) for f in files):
        return "vendored"
    if diff.count("\n") > p.max_diff_lines:
        return "huge_diff"
    return None


_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def code_words(text: str) -> str:
    """Split identifiers (``JSONDecoder`` → ``JSON Decoder``, ``extra_decode`` → ``extra decode``) for BM25."""
    return _CAMEL.sub(" ", text).replace("_", " ")


def bm25_top(query: str, paths: list[str], texts: list[str], k: int) -> list[int]:
    """Indices of the ``k`` best BM25 matches of ``query`` among ``texts``."""
    import bm25s

    if not texts or k <= 0:
        return []
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(
            [code_words(f"{p}\n{t}") for p, t in zip(paths, texts, strict=True)], stopwords="en", show_progress=False
        ),
        show_progress=False,
    )
    q = bm25s.tokenize([code_words(query)], stopwords="en", show_progress=False)
    k = min(k, len(texts))
    idx, scores = retriever.retrieve(q, k=k, show_progress=False)
    return [int(i) for i, s in zip(idx[0], scores[0], strict=True) if s > 0]


def build_sample(meta: dict, diff: str, blobs: BlobReader, p: CommitParams) -> tuple[str, int, list[str]]:
    """(text, target_offset, retrieved context paths) of one commit."""
    repo, parent = Path(meta["repo_path"]), meta["parent"]
    tree = list_tree(repo, parent)
    readme = next((path for path, _ in tree if path.lower().startswith("readme")), None)
    parts = [f"# Commit message\n{meta['message']}\n"]
    if readme and p.max_readme_chars:
        text = (blobs.read(parent, readme) or b"").decode(errors="replace")[: p.max_readme_chars]
        parts.append(f"# README ({readme})\n{text}\n")
    listing = [path for path, _ in tree][: p.max_tree_lines]
    parts.append("# Directory tree\n" + "\n".join(listing) + "\n")
    code = [
        (path, size)
        for path, size in tree
        if language_of(path) not in (None, "markdown", "rst", "json") and size < 1_000_000
    ]
    texts = [(blobs.read(parent, path) or b"").decode(errors="replace")[: p.max_file_chars] for path, _ in code]
    retrieved = [code[i][0] for i in bm25_top(meta["message"], [c[0] for c in code], texts, p.top_k_files)]
    for path in retrieved:
        parts.append(f"{FILE_SEP}{path}\n{texts[[c[0] for c in code].index(path)]}\n")
    prompt = "".join(parts)
    target = "# Changed paths\n" + "\n".join(f["path"] for f in meta["files"]) + "\n# Changes\n" + diff
    return prompt + target, len(prompt), retrieved


class CommitSamples(Step):
    """Turn ``read_git_history`` documents into code-change prediction samples."""

    name = "commit_samples"
    requires = ("bm25s",)
    Params = CommitParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        readers: dict[str, BlobReader] = {}
        try:
            for d in docs:
                why = rejection(d.metadata, d.text, self.params)
                if why:
                    self.stats.rejects[why] += 1
                    continue
                repo = d.metadata["repo_path"]
                blobs = readers.setdefault(repo, BlobReader(Path(repo)))
                text, offset, retrieved = build_sample(d.metadata, d.text, blobs, self.params)
                meta = {k: v for k, v in d.metadata.items() if k != "files"}
                meta.update(
                    task="code_change_prediction",
                    target_offset=offset,
                    changed_paths=[f["path"] for f in d.metadata["files"]],
                    context_files=retrieved,
                )
                yield Document(d.id, text, meta)
        finally:
            for r in readers.values():
                r.close()
