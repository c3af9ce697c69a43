"""Filters on synthesized pairs: every code block parses, an LLM judge, topic + difficulty, sampling weights."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

from codekiln.workloads.data.base import Filter, Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.synthesis.common import LLMStep, code_blocks, parse_json, parse_score
from codekiln.workloads.data.synthesis.generate import doc_rng
from codekiln.workloads.data.synthesis.params import (
    CodeBlockFilterParams,
    DifficultyWeightsParams,
    JudgeParams,
    TopicDifficultyParams,
)

JUDGE_PROMPT = """Judge whether the response fully and correctly solves the instruction.
Answer with one JSON object only: {{"score": n}} where n is 0 (useless) to 10 (perfect).

Instruction:
{instruction}

Response:
{response}"""
TOPIC_PROMPT = """Classify the programming task into one topic of: {topics}.
Then rate its difficulty for that topic from 0 (trivial) to 10 (expert).
Answer with one JSON object only: {{"topic": "...", "difficulty": n}}

Task:
{instruction}"""


class CodeBlockFilter(Filter):
    """Rule filter: drop a response when any fenced code block fails to parse (tree-sitter; ``ast`` for Python)."""

    name = "code_block_filter"
    Params = CodeBlockFilterParams

    def keep(self, doc: Document) -> bool | str:
        from codekiln.workloads.data.syntax import TREE_SITTER_LANGUAGES, python_ok, tree_sitter_ok

        blocks = code_blocks(str(doc.metadata.get("response", "")), self.params.default_language)
        if not blocks:
            return "no_code_block" if self.params.require_code else True
        for lang, code in blocks:
            if lang == "python":
                ok = python_ok(code)
            elif lang in TREE_SITTER_LANGUAGES:
                ok = tree_sitter_ok(code, lang)
            else:
                self.stats.counters[f"unchecked_{lang or 'untagged'}"] += 1
                continue
            if not ok:
                return f"code_block_syntax_error_{lang}"
        return True


def _scored(step: LLMStep, batch: list[Document], chats: list[list[dict]], what: str,
            key: str) -> Iterator[tuple[Document, float | None, str]]:
    """Ask ``step``'s LLM (greedy) and read a 0–10 score from each reply: ``(doc, score, reply text)``.

    A failed call or an unreadable score drops the document, or passes it on with score None
    (``onError: keep`` / ``onUnparseable: keep``, counted as ``<what>_unparseable_kept``).

    Args:
        step: the calling step (its client, params, stats and drop).
        batch: the documents, one chat each.
        chats: the chats, in ``batch`` order.
        what: the counter/drop-reason prefix (``judge``, ``difficulty``).
        key: the JSON key of the score.
    """
    answers = step.client.chat_many(chats, max_tokens=step.params.max_tokens, temperature=0.0)
    for doc, r in zip(batch, answers, strict=True):
        if not r.ok:
            if step.failed(doc, r):
                yield doc, None, ""
            continue
        score = parse_score(r.text, key=key)
        if score is not None:
            yield doc, score, r.text
        elif step.params.on_unparseable == "keep":
            step.stats.counters[f"{what}_unparseable_kept"] += 1
            yield doc, None, r.text
        else:
            step.drop(doc, f"{what}_unparseable", r.text[:100])


class LLMJudgeFilter(LLMStep):
    """LLM judge: ``metadata.judge_score`` 0–10; drop below ``minScore`` or when the verdict is unreadable."""

    name = "llm_judge_filter"
    Params = JudgeParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        chats = [[{"role": "user", "content": JUDGE_PROMPT.format(
            instruction=d.metadata.get("instruction", ""), response=d.metadata.get("response", d.text))}]
            for d in batch]
        for doc, score, _ in _scored(self, batch, chats, "judge", "score"):
            if score is None:
                yield doc
            elif score < self.params.min_score:
                self.drop(doc, "judge_low_score", score)
            else:
                doc.metadata["judge_score"] = score
                yield doc


class TopicDifficulty(LLMStep):
    """Topic classification and per-topic difficulty 0–10 (Seed-Coder drops < 3)."""

    name = "topic_difficulty"
    Params = TopicDifficultyParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        topics = self.params.topics
        lower = {t.lower(): t for t in topics}
        chats = [[{"role": "user", "content": TOPIC_PROMPT.format(
            topics=", ".join(topics), instruction=d.metadata.get("instruction", d.text))}] for d in batch]
        for doc, difficulty, text in _scored(self, batch, chats, "difficulty", "difficulty"):
            if difficulty is None:
                yield doc
                continue
            obj = parse_json(text) or {}
            topic = lower.get(str(obj.get("topic", "")).strip().lower()) or next(
                (t for t in topics if t.lower() in text.lower()), "other")
            doc.metadata.update(topic=topic, difficulty=difficulty)
            self.stats.counters[f"topic_{topic.replace(' ', '_')}"] += 1
            if difficulty < self.params.min_difficulty:
                self.drop(doc, "too_easy", difficulty)
            else:
                yield doc


class DifficultyWeights(Step):
    """``metadata.sample_weight = base + perPoint · difficulty``; ``materialize`` repeats documents by weight."""

    name = "difficulty_weights"
    Params = DifficultyWeightsParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        p = self.params
        for doc in docs:
            difficulty = doc.metadata.get("difficulty")
            d = float(difficulty) if isinstance(difficulty, int | float) else 0.0
            weight = p.base + p.per_point * d
            doc.metadata["sample_weight"] = round(weight, 4)
            if not p.materialize:
                yield doc
                continue
            rng = doc_rng(p.seed, doc.id)
            copies = math.floor(weight) + (1 if rng.random() < weight - math.floor(weight) else 0)
            self.stats.counters["copies"] += copies
            if not copies:
                self.drop(doc, "sampled_out", weight)
            for i in range(copies):
                yield doc if i == 0 else Document(f"{doc.id}#w{i}", doc.text, dict(doc.metadata))
