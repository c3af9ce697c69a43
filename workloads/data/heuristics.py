"""OpenCoder-style heuristic rules (drop when a rule fires), thresholds configurable per language.

Each document is rejected with the name of the first rule that fires; the stats
count rejections per rule. Rules: size (chars, lines), line length (max, mean),
character mix (alphabetic, digits, whitespace), repetition (top word 2/3/4-gram
character fraction, duplicated 5-gram fraction, duplicate lines), comment fraction,
auto-generated markers, long base64/hex runs, assert-line fraction, and Python
files failing ``ast.parse``.
"""

from __future__ import annotations

import re

import numpy as np

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Filter
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.syntax import python_ok

AUTOGEN_MARKERS = step_params.AUTOGEN_MARKERS
_ALPHA = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
_SPACE = re.compile(r"\s")
_LINE_COMMENT = {
    "python": "#",
    "bash": "#",
    "ruby": "#",
    "perl": "#",
    "r": "#",
    "yaml": "#",
    "toml": "#",
    "sql": "--",
    "lua": "--",
}


Thresholds = step_params.Thresholds


def _count(pattern: re.Pattern, text: str) -> int:
    return pattern.subn("", text)[1]


def _gram_ids(word_ids: np.ndarray, n: int) -> np.ndarray:
    """An id per word ``n``-gram (polynomial hash of the word ids; collisions are negligible)."""
    width = word_ids.size - n + 1
    key = np.zeros(width, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for k in range(n):
            key = key * np.uint64(0x100000001B3) + word_ids[k : k + width].astype(np.uint64) + np.uint64(1)
    return np.unique(key, return_inverse=True)[1].reshape(-1)


def _top_ngram_fraction(word_ids: np.ndarray, lens: np.ndarray, n: int, total_chars: int) -> float:
    if word_ids.size < n or not total_chars:
        return 0.0
    gid = _gram_ids(word_ids, n)
    top = int(np.bincount(gid).argmax())
    first = int(np.flatnonzero(gid == top)[0])
    return int((gid == top).sum()) * int(lens[first : first + n].sum()) / total_chars


def _dup_ngram_fraction(word_ids: np.ndarray, lens: np.ndarray, n: int, total_chars: int) -> float:
    if word_ids.size < n or not total_chars:
        return 0.0
    gid = _gram_ids(word_ids, n)
    _, first = np.unique(gid, return_index=True)
    repeated = np.ones(gid.size, dtype=bool)
    repeated[first] = False
    cover = np.zeros(word_ids.size + 1, dtype=np.int64)
    starts = np.flatnonzero(repeated)
    np.add.at(cover, starts, 1)
    np.add.at(cover, starts + n, -1)
    covered = np.cumsum(cover[:-1]) > 0
    return int(lens[covered].sum()) / total_chars


def _comment_chars(lines: list[str], language: str) -> int:
    marker = _LINE_COMMENT.get(language, "//")
    total, in_block = 0, False
    for line in lines:
        s = line.strip()
        if marker == "//" and (in_block or s.startswith("/*")):
            total += len(s)
            in_block = "*/" not in s or (s.startswith("/*") and s.endswith("/*"))
        elif s.startswith(marker):
            total += len(s)
    return total


def first_failing_rule(text: str, language: str, t: Thresholds) -> str | None:
    """The name of the first rule that fires for ``text``, or None."""
    n = len(text)
    if n < t.min_chars:
        return "min_chars"
    lines = text.splitlines()
    if len(lines) < t.min_lines:
        return "min_lines"
    if len(lines) > t.max_lines:
        return "max_lines"
    lengths = [len(x) for x in lines]
    if max(lengths) > t.max_line_chars:
        return "max_line_chars"
    mean = sum(lengths) / len(lengths)
    if mean < t.min_mean_line_chars:
        return "min_mean_line_chars"
    if mean > t.max_mean_line_chars:
        return "max_mean_line_chars"
    if _count(_ALPHA, text) / n < t.min_alpha_fraction:
        return "min_alpha_fraction"
    if _count(_DIGIT, text) / n > t.max_digit_fraction:
        return "max_digit_fraction"
    if _count(_SPACE, text) / n > t.max_whitespace_fraction:
        return "max_whitespace_fraction"
    words = text.split()
    vocab: dict[str, int] = {}
    word_ids = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int64, count=len(words))
    lens = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    word_chars = int(lens.sum())
    for k, lim in ((2, t.max_top_2gram_fraction), (3, t.max_top_3gram_fraction), (4, t.max_top_4gram_fraction)):
        if _top_ngram_fraction(word_ids, lens, k, word_chars) > lim:
            return f"max_top_{k}gram_fraction"
    if _dup_ngram_fraction(word_ids, lens, 5, word_chars) > t.max_dup_5gram_fraction:
        return "max_dup_5gram_fraction"
    nonblank = [x.strip() for x in lines if x.strip()]
    if nonblank and 1 - len(set(nonblank)) / len(nonblank) > t.max_duplicate_line_fraction:
        return "max_duplicate_line_fraction"
    if _comment_chars(lines, language) / n > t.max_comment_fraction:
        return "max_comment_fraction"
    head = text[: t.autogen_window_chars].lower()
    if any(m in head for m in t.autogen_markers):
        return "autogenerated"
    if re.search(rf"[A-Za-z0-9+/=]{{{t.max_encoded_run_chars},}}", text):
        return "encoded_data"
    if (
        nonblank
        and sum(x.startswith(("assert", "self.assert")) for x in nonblank) / len(nonblank) > t.max_assert_line_fraction
    ):
        return "max_assert_line_fraction"
    if language == "python" and t.python_must_parse and not python_ok(text):
        return "python_ast_parse"
    return None


class HeuristicFilter(Filter):
    """Apply the rule families with per-language thresholds; rejects counted per rule."""

    name = "heuristic_filter"

    Params = step_params.HeuristicFilterParams

    def __init__(self, params, ctx) -> None:
        super().__init__(params, ctx)
        self._by_lang = {
            lang: params.default.model_copy(update={k: getattr(ov, k) for k in ov.model_fields_set})
            for lang, ov in params.per_language.items()
        }

    def keep(self, doc: Document) -> bool | str:
        lang = str(doc.metadata.get("language") or "")
        rule = first_failing_rule(doc.text, lang, self._by_lang.get(lang, self.params.default))
        return True if rule is None else rule
