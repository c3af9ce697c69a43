"""Code-web recall: HTML → text that keeps code blocks, and iterative fastText recall.

``iterative_recall``: seed positives + negatives → train → score the pool → add the
top candidates as positives → retrain, for ``rounds`` rounds; every round reports
recall and precision on a held-out labelled split and stops early when a round adds
less than ``min_added_fraction`` of the current positives (DeepSeekMath: ~2%).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from html.parser import HTMLParser

import numpy as np

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.quality import FastTextTrainParams, positive_scores, train_fasttext

_BLOCK = {
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "tr",
    "table",
    "section",
    "article",
    "header",
    "footer",
    "blockquote",
    "dt",
    "dd",
    "hr",
}
_SKIP = {"script", "style", "noscript", "template", "svg", "head", "nav"}


class _Extractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self.skip = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag in _SKIP:
            self.skip += 1
        elif tag == "pre":
            self.pre += 1
            if self.pre == 1:
                self.out.append("\n```\n")
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag == "code" and not self.pre:
            self.out.append("`")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP:
            self.skip = max(0, self.skip - 1)
        elif tag == "pre":
            self.pre = max(0, self.pre - 1)
            if self.pre == 0:
                self.out.append("\n```\n")
        elif tag in _BLOCK:
            self.out.append("\n")
        elif tag == "code" and not self.pre:
            self.out.append("`")

    def handle_data(self, data: str) -> None:
        if self.skip:
            return
        self.out.append(data if self.pre else " ".join(data.split()) + (" " if data[-1:].isspace() else ""))


def html_to_text(html: str) -> str:
    """Visible text; ``<pre>`` blocks kept verbatim in ``` fences, inline ``<code>`` in backticks."""
    ex = _Extractor()
    ex.feed(html)
    ex.close()
    lines = [line.rstrip() for line in "".join(ex.out).splitlines()]
    text, blank = [], 0
    for line in lines:
        blank = blank + 1 if not line.strip() else 0
        if blank <= 1:
            text.append(line)
    return "\n".join(text).strip()


def extract_main(html: str) -> str:
    """Main content of a web page by trafilatura (markdown: <pre> as fenced code, <code> inline), with any
    <pre> block trafilatura dropped appended in a fence; the builtin extractor when trafilatura finds nothing.

    Args:
        html: the page.
    """
    import trafilatura

    text = trafilatura.extract(
        html,
        output_format="markdown",
        include_formatting=True,
        include_comments=False,
        include_tables=True,
        favor_precision=True,
        deduplicate=False,
    )
    if not text:
        return html_to_text(html)
    missing = []
    for block in _pre_blocks(html):
        lines = [x.strip() for x in block.splitlines() if x.strip()]
        if lines and not all(x in text for x in lines[:3]):
            missing.append(block.strip("\n"))
    return text + "".join(f"\n\n```\n{b}\n```" for b in missing)


class _PreCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.depth = 0

    def handle_starttag(self, tag: str, attrs) -> None:
        if tag == "pre":
            self.depth += 1
            if self.depth == 1:
                self.blocks.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "pre":
            self.depth = max(0, self.depth - 1)

    def handle_data(self, data: str) -> None:
        if self.depth:
            self.blocks[-1] += data


def _pre_blocks(html: str) -> list[str]:
    """The text of every top-level <pre> element."""
    p = _PreCollector()
    p.feed(html)
    p.close()
    return p.blocks


class HtmlToText(Step):
    """Replace HTML documents' text with extracted text (code blocks kept)."""

    name = "html_to_text"

    Params = step_params.HtmlToTextParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        extract = extract_main if self.params.extractor == "trafilatura" else html_to_text
        for d in docs:
            text = extract(d.text)
            if len(text) < self.params.min_chars:
                self.drop(d, "empty_after_extraction", len(text))
                continue
            yield Document(d.id, text, {**d.metadata, "format": "text"})


@dataclass
class RoundReport:
    round: int
    positives: int
    added: int
    recall: float
    precision: float
    threshold: float


def _metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> tuple[float, float]:
    pred = scores >= threshold
    tp = int((pred & labels).sum())
    return tp / max(int(labels.sum()), 1), tp / max(int(pred.sum()), 1)


def iterative_recall(
    seed_pos: list[str],
    seed_neg: list[str],
    pool: list[str],
    heldout: list[str],
    heldout_labels: list[bool],
    *,
    rounds: int = 3,
    top_fraction: float = 0.1,
    threshold: float = 0.5,
    min_added_fraction: float = 0.02,
    train: FastTextTrainParams | None = None,
) -> tuple[list[RoundReport], np.ndarray]:
    """Run the recall loop; returns the per-round reports and the pool indices recalled as positives."""
    positives, taken = list(seed_pos), np.zeros(len(pool), dtype=bool)
    labels = np.asarray(heldout_labels, dtype=bool)
    reports: list[RoundReport] = []
    for r in range(1, rounds + 1):
        model = train_fasttext(positives, seed_neg, train)
        recall, precision = _metrics(positive_scores(model, heldout), labels, threshold)
        scores = positive_scores(model, pool)
        cand = np.flatnonzero((scores >= threshold) & ~taken)
        cand = cand[np.argsort(-scores[cand], kind="stable")][: max(1, int(top_fraction * len(pool)))]
        taken[cand] = True
        positives.extend(pool[i] for i in cand)
        reports.append(RoundReport(r, len(positives), int(cand.size), recall, precision, threshold))
        if cand.size < min_added_fraction * (len(positives) - cand.size):
            break
    return reports, np.flatnonzero(taken)
