"""Execution-verified data: sandbox self-correction, DPO pairs from tested samples, rejection sampling.

All three run model-written code through the sandbox's reward client (``RewardClient``).
"""

from __future__ import annotations

from collections.abc import Iterator

from codekiln.workloads.data.document import Document
from codekiln.workloads.data.synthesis.common import (
    LLMStep,
    code_blocks,
    sandbox_url,
    score_programs,
    split_tests,
)
from codekiln.workloads.data.synthesis.params import DPOPairsParams, RejectionSamplingParams, SelfCorrectionParams

SOLVE_PROMPT = """Solve the task below in Python. Answer with exactly two fenced code blocks:
1. ```python``` with the solution;
2. ```python``` with unit tests: plain `assert` statements that call the solution.

Task:
{instruction}"""
FIX_PROMPT = """Running your tests in a sandbox failed:
{failures}
Fix the solution (or a wrong test) and answer again with the same two code blocks."""


def solution_and_tests(text: str) -> tuple[str, str, list[str]] | None:
    """(solution, test setup, asserts) from an answer with a solution block and a block of asserts."""
    blocks = [code for lang, code in code_blocks(text) if lang == "python"]
    for i in range(len(blocks) - 1, -1, -1):
        parsed = split_tests(blocks[i])
        if parsed and parsed[1]:
            solution = "\n".join(b for j, b in enumerate(blocks) if j != i)
            return (solution, parsed[0], parsed[1]) if solution.strip() else None
    return None


class SelfCorrection(LLMStep):
    """For instructions at least ``minDifficulty`` hard: solution + tests → sandbox → feedback → revise, up to
    ``maxRounds``; only verified pairs go on (``metadata.rounds``, ``solution``, ``tests``, ``response``)."""

    name = "self_correction"
    Params = SelfCorrectionParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        from codekiln.workloads.sandbox.client import TestSpec

        p = self.params
        hard = [d for d in batch if float(d.metadata.get("difficulty", 10) or 0) >= p.min_difficulty
                and d.metadata.get("instruction")]
        hard_ids = {id(d) for d in hard}
        chats = {id(d): [{"role": "user", "content": SOLVE_PROMPT.format(instruction=d.metadata["instruction"])}]
                 for d in hard}
        verified: dict[int, tuple[int, str, tuple[str, str, list[str]]]] = {}
        pending = list(hard)
        url = sandbox_url(p.sandbox_url) if hard else ""
        for round_no in range(1, p.max_rounds + 1):
            if not pending:
                break
            answers = self.client.chat_many([chats[id(d)] for d in pending], max_tokens=p.max_tokens)
            jobs, owners, still = [], [], []
            for d, r in zip(pending, answers, strict=True):
                if not r.ok:
                    self.stats.counters[f"llm_error_{(r.error or '').split(':', 1)[0]}"] += 1
                    continue
                chats[id(d)].append({"role": "assistant", "content": r.text})
                parsed = solution_and_tests(r.text)
                if parsed is None:
                    self.stats.counters["unparseable_answer"] += 1
                    chats[id(d)].append({"role": "user", "content": FIX_PROMPT.format(
                        failures="your answer did not contain a solution block and a block of assert tests")})
                    still.append(d)
                    continue
                jobs.append((parsed[0], TestSpec(tests=parsed[2], setup=parsed[1], timeout_s=p.timeout_s), "python"))
                owners.append((d, parsed, r.text))
            for (d, parsed, text), res in zip(owners, score_programs(url, jobs), strict=True):
                if res.verdict == "OK":
                    verified[id(d)] = (round_no, text, parsed)
                    continue
                failures = "\n".join(f"- test {t.index + 1}: {t.error or t.verdict}" for t in res.tests
                                     if not t.passed)[:2000] or f"- {res.verdict}: {res.error}"
                chats[id(d)].append({"role": "user", "content": FIX_PROMPT.format(failures=failures)})
                still.append(d)
            pending = still
        for d in batch:
            if id(d) not in hard_ids:
                yield d
            elif id(d) in verified:
                rounds, text, (solution, setup, tests) = verified[id(d)]
                d.metadata.update(rounds=rounds, response=text, solution=solution, tests=tests, setup=setup,
                                  verified=True)
                self.stats.counters[f"verified_round_{rounds}"] += 1
                yield d
            else:
                self.drop(d, "not_verified", p.max_rounds)


class _Sampled(LLMStep):
    """k samples per task document (``text`` = prompt; ``metadata.tests``/``setup``), tested in the sandbox."""

    def sample_and_score(self, batch: list[Document]) -> list[list[tuple[str, bool, int]]]:
        """Per document: (answer text, passed, seed) for each of the k samples."""
        from codekiln.workloads.sandbox.client import TestSpec, extract_code

        p = self.params
        jobs_per_doc = [(d, i) for d in batch for i in range(p.samples)]
        if p.mode == "completion":
            results = self.client.map(lambda job: self.client.complete(
                job[0].text, temperature=p.temperature, seed=p.seed + job[1], max_tokens=p.max_tokens),
                jobs_per_doc)
        else:
            results = self.client.map(lambda job: self.client.chat(
                [{"role": "user", "content": job[0].metadata.get("instruction", job[0].text)}],
                temperature=p.temperature, seed=p.seed + job[1], max_tokens=p.max_tokens), jobs_per_doc)
        runs, idx = [], []
        for k, ((d, _i), r) in enumerate(zip(jobs_per_doc, results, strict=True)):
            if not r.ok:
                self.stats.counters[f"llm_error_{(r.error or '').split(':', 1)[0]}"] += 1
                continue
            code = d.text + r.text if p.mode == "completion" else extract_code(r.text, "python")
            if not code or not d.metadata.get("tests"):
                continue
            runs.append((code, TestSpec(tests=list(d.metadata["tests"]), setup=d.metadata.get("setup", ""),
                                        timeout_s=p.timeout_s), d.metadata.get("language", "python")))
            idx.append(k)
        passed = {}
        if runs:
            for k, res in zip(idx, score_programs(sandbox_url(p.sandbox_url), runs), strict=True):
                passed[k] = res.verdict == "OK"
        out: list[list[tuple[str, bool, int]]] = [[] for _ in batch]
        pos = {id(d): j for j, d in enumerate(batch)}
        for k, ((d, i), r) in enumerate(zip(jobs_per_doc, results, strict=True)):
            if r.ok and k in passed:
                out[pos[id(d)]].append((r.text, passed[k], p.seed + i))
        return out


class DPOPairs(_Sampled):
    """Seed-Coder DPO data: sample k answers, run the tests, pair a passing (chosen) with a failing (rejected)."""

    name = "dpo_pairs"
    Params = DPOPairsParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        for d, samples in zip(batch, self.sample_and_score(batch), strict=True):
            good = [s for s in samples if s[1]]
            bad = [s for s in samples if not s[1]]
            self.stats.counters["samples_passed"] += len(good)
            self.stats.counters["samples_failed"] += len(bad)
            if not samples:
                self.drop(d, "no_scored_sample")
                continue
            if not good or not bad:
                self.drop(d, "no_pair_all_pass" if good else "no_pair_all_fail")
                continue
            for j, (g, b) in enumerate(zip(good, bad, strict=False)):
                if j >= self.params.pairs_per_prompt:
                    break
                yield Document(f"{d.id}#p{j}", d.text, {
                    **{k: v for k, v in d.metadata.items() if k in ("tests", "setup", "language", "instruction")},
                    "prompt": d.metadata.get("instruction", d.text) if self.params.mode == "chat" else d.text,
                    "chosen": g[0], "rejected": b[0], "chosen_seed": g[2], "rejected_seed": b[2],
                    "pass_rate": len(good) / len(samples), "source_id": d.id})


class RejectionSampling(_Sampled):
    """LongCoT warm-up data: keep only verified answers (up to ``keepPerPrompt`` per prompt)."""

    name = "rejection_sampling"
    Params = RejectionSamplingParams

    def process(self, batch: list[Document]) -> Iterator[Document]:
        for d, samples in zip(batch, self.sample_and_score(batch), strict=True):
            good = [s for s in samples if s[1]]
            self.stats.counters["samples_passed"] += len(good)
            self.stats.counters["samples_failed"] += len(samples) - len(good)
            if not good:
                self.drop(d, "no_verified_answer", len(samples))
                continue
            for j, (text, _, seed) in enumerate(good[: self.params.keep_per_prompt]):
                meta = {**d.metadata, "response": text, "seed": seed, "verified": True,
                        "pass_rate": len(good) / len(samples), "source_id": d.id}
                if self.params.mode == "completion":
                    meta.setdefault("instruction", d.text)
                yield Document(f"{d.id}#r{j}", d.text, meta)
