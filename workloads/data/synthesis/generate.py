"""LLM generation steps: grounded instructions with style diversity, responses, and rewrites of low-quality code."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

from codekiln.workloads.data.document import Document
from codekiln.workloads.data.synthesis.common import LLMStep, code_blocks, sandbox_url, score_programs
from codekiln.workloads.data.synthesis.params import InstructionParams, ResponseParams, RewriteParams

INSTRUCTION_PROMPT = """You write programming tasks for training a coding assistant.
Write ONE self-contained instruction that a user could give and that the code below answers. Ground it in the
code (same functionality and names), but do not paste the code. Write it as {style}.

Context:
{context}

Code ({language}):
```{language}
{code}
```

Answer with the instruction only."""
MIX_PROMPT = """Invent a new style for phrasing programming requests that mixes these two styles:
1. {a}
2. {b}
Answer with a short phrase describing the new style only."""
REWRITE_PROMPT = """Rewrite the following {language} code to be clean, readable, well-structured and documented.
Keep its behaviour, its public names and its signatures exactly. Answer with one fenced code block.

```{language}
{code}
```"""


def doc_rng(seed: int, doc_id: str) -> random.Random:
    """A per-document generator (results do not depend on sharding or order)."""
    digest = hashlib.sha256(f"{seed}:{doc_id}".encode("utf-8", "surrogatepass")).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


class InstructionGeneration(LLMStep):
    """Snippet → ``metadata.instruction`` in a style from the meta-style set, or a mix of two (Seed-Coder)."""

    name = "instruction_generation"
    Params = InstructionParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        p = self.params
        styles, mixes = [], []
        for doc in batch:
            rng = doc_rng(p.seed, doc.id)
            if rng.random() < p.style_mix_rate:
                a, b = rng.sample(p.styles, 2)
                mixes.append((len(styles), a, b))
                styles.append(None)
            else:
                styles.append(rng.choice(p.styles))
        if mixes:  # ask the model for the new mixed styles; a failed mix falls back to "a, and b"
            answers = self.client.chat_many([[{"role": "user", "content": MIX_PROMPT.format(a=a, b=b)}]
                                             for _, a, b in mixes], max_tokens=48)
            for (i, a, b), r in zip(mixes, answers, strict=True):
                text = (r.text or "").strip().splitlines()[0].strip() if r.ok and (r.text or "").strip() else ""
                styles[i] = text or f"{a}, and {b}"
                batch[i].metadata["style_parents"] = [a, b]
                self.stats.counters["styles_mixed"] += 1
        prompts = [[{"role": "user", "content": INSTRUCTION_PROMPT.format(
            style=s, context=d.metadata.get("context", "") or "(none)", language=d.metadata.get("language", "code"),
            code=d.text)}] for d, s in zip(batch, styles, strict=True)]
        for doc, style, r in zip(batch, styles, self.client.chat_many(prompts, max_tokens=p.max_tokens),
                                 strict=True):
            if not r.ok:
                if self.failed(doc, r):
                    yield doc
                continue
            if not r.text.strip():
                self.drop(doc, "empty_instruction")
                continue
            doc.metadata.update(instruction=r.text.strip(), style=style)
            yield doc


class ResponseGeneration(LLMStep):
    """``metadata.instruction`` → ``metadata.response`` (the answer the SFT sample teaches)."""

    name = "response_generation"
    Params = ResponseParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        todo = [d for d in batch if d.metadata.get("instruction")]
        for d in batch:
            if not d.metadata.get("instruction"):
                self.drop(d, "no_instruction")
        chats = [[{"role": "system", "content": self.params.system},
                  {"role": "user", "content": d.metadata["instruction"]}] for d in todo]
        for doc, r in zip(todo, self.client.chat_many(chats, max_tokens=self.params.max_tokens), strict=True):
            if not r.ok:
                if self.failed(doc, r):
                    yield doc
                continue
            if not r.text.strip():
                self.drop(doc, "empty_response")
                continue
            doc.metadata["response"] = r.text
            yield doc


class LLMRewrite(LLMStep):
    """Qwen3-Coder: rewrite documents scoring under ``threshold``; a rewrite replaces the text only if it
    parses and, when the document has ``metadata.tests``, passes them in the sandbox."""

    name = "llm_rewrite"
    Params = RewriteParams

    def _parses(self, code: str, language: str) -> bool:
        from codekiln.workloads.data.syntax import TREE_SITTER_LANGUAGES, python_ok, tree_sitter_ok

        if language == "python":
            return python_ok(code)
        if language in TREE_SITTER_LANGUAGES:
            return tree_sitter_ok(code, language)
        return True

    def process(self, batch: list[Document]) -> Iterator[Document]:
        p = self.params
        low = [d for d in batch if isinstance(d.metadata.get(p.score_key), int | float)
               and d.metadata[p.score_key] < p.threshold]
        low_ids = {id(d) for d in low}
        prompts = [[{"role": "user", "content": REWRITE_PROMPT.format(
            language=d.metadata.get("language", "python"), code=d.text)}] for d in low]
        answers = dict(zip((id(d) for d in low), self.client.chat_many(prompts, max_tokens=p.max_tokens),
                           strict=True))
        candidates: dict[int, str] = {}
        for d in low:
            r, lang = answers[id(d)], d.metadata.get("language", "python")
            blocks = code_blocks(r.text or "", lang) if r.ok else []
            code = blocks[0][1] if blocks else None
            if not r.ok:
                self.stats.counters[f"rewrite_llm_error_{(r.error or '').split(':', 1)[0]}"] += 1
            elif code is None or not code.strip():
                self.stats.counters["rewrite_no_code"] += 1
            elif not self._parses(code, lang):
                self.stats.counters["rewrite_syntax_error"] += 1
            else:
                candidates[id(d)] = code
        tested = [d for d in low if id(d) in candidates and d.metadata.get("tests")]
        if tested:
            from codekiln.workloads.sandbox.client import TestSpec

            url = sandbox_url(p.sandbox_url)
            results = score_programs(url, [(candidates[id(d)], TestSpec(
                tests=list(d.metadata["tests"]), setup=d.metadata.get("setup", ""), timeout_s=p.timeout_s),
                "python") for d in tested])
            for d, res in zip(tested, results, strict=True):
                if res.verdict != "OK":
                    self.stats.counters["rewrite_failed_tests"] += 1
                    del candidates[id(d)]
        for d in batch:
            if id(d) not in low_ids:
                yield d
            elif id(d) in candidates:
                d.metadata["original_text"] = d.text
                d.metadata["rewritten"] = True
                d.text = candidates[id(d)]
                self.stats.counters["rewritten"] += 1
                yield d
            elif p.on_failure == "keep_original":
                yield d
            else:
                self.drop(d, "rewrite_rejected")
