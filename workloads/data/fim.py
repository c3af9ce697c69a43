"""Fill-in-the-middle: PSM and SPM with a character-level split (Bavarian et al. 2022).

PSM = ``<|fim_prefix|>prefix<|fim_suffix|>suffix<|fim_middle|>middle``;
SPM (Seed-Coder's form) = ``<|fim_suffix|>suffix<|fim_prefix|>prefix<|fim_middle|>middle``.
The packer appends ``<|endoftext|>``. ``fim_step`` is the document-level mode; the
context-level mode (FIM applied per packed context) lives in ``pack``.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Iterable, Iterator

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.special_tokens import FIM_MIDDLE, FIM_PREFIX, FIM_SUFFIX

FimParams = step_params.FimParams


def split_points(text: str, rng: random.Random) -> tuple[int, int]:
    """Two sorted character positions drawn uniformly in ``[0, len(text)]``."""
    a, b = rng.randint(0, len(text)), rng.randint(0, len(text))
    return min(a, b), max(a, b)


def fim_format(prefix: str, middle: str, suffix: str, spm: bool) -> str:
    if spm:
        return f"{FIM_SUFFIX}{suffix}{FIM_PREFIX}{prefix}{FIM_MIDDLE}{middle}"
    return f"{FIM_PREFIX}{prefix}{FIM_SUFFIX}{suffix}{FIM_MIDDLE}{middle}"


def apply_fim(text: str, rng: random.Random, rate: float, spm_rate: float) -> str:
    """With probability ``rate`` return the FIM form of ``text`` (SPM with probability ``spm_rate``)."""
    if rng.random() >= rate:
        return text
    lo, hi = split_points(text, rng)
    return fim_format(text[:lo], text[lo:hi], text[hi:], rng.random() < spm_rate)


def restore(sample: str) -> str:
    """The original document of a FIM (or plain) sample."""
    if sample.startswith(FIM_PREFIX):
        body = sample[len(FIM_PREFIX) :]
        prefix, rest = body.split(FIM_SUFFIX, 1)
        suffix, middle = rest.split(FIM_MIDDLE, 1)
        return prefix + middle + suffix
    if sample.startswith(FIM_SUFFIX):
        body = sample[len(FIM_SUFFIX) :]
        suffix, rest = body.split(FIM_PREFIX, 1)
        prefix, middle = rest.split(FIM_MIDDLE, 1)
        return prefix + middle + suffix
    return sample


def doc_rng(seed: int, doc_id: str) -> random.Random:
    """A per-document generator, so results do not depend on sharding."""
    return random.Random((seed << 32) ^ zlib.crc32(doc_id.encode()))


class FimStep(Step):
    """Document-level FIM on the text (sentinels are special tokens of the trained tokenizer)."""

    name = "fim"
    Params = FimParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        for d in docs:
            yield Document(
                d.id,
                apply_fim(d.text, doc_rng(self.params.seed, d.id), self.params.rate, self.params.spm_rate),
                d.metadata,
            )
