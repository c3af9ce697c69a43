"""fastText quality scoring: train a binary classifier, score documents, keep by threshold or drop a bottom fraction."""

from __future__ import annotations

import multiprocessing
import os
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from codekiln.workloads.atomic_io import atomic_path
from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document

POS, NEG = "__label__pos", "__label__neg"


FastTextTrainParams = step_params.FastTextTrainParams


MAX_WORDS = 1000  # fastText reads at most 1024 tokens per line; longer lines train unlabelled tails (NaN losses)


def one_line(text: str, max_chars: int) -> str:
    """The first ``max_chars`` characters as one line of at most ``MAX_WORDS`` words."""
    return " ".join(text[:max_chars].split()[:MAX_WORDS])


def _train_in_fresh_process(train_file: str, model_file: str, p: FastTextTrainParams) -> None:
    import fasttext

    for attempt in range(3):
        try:
            model = fasttext.train_supervised(
                input=train_file,
                dim=p.dim,
                lr=p.lr,
                wordNgrams=p.word_ngrams,
                minCount=p.min_count,
                epoch=p.epoch,
                verbose=0,
                seed=p.seed + attempt,
                thread=1,
            )
            model.save_model(model_file)
            return
        except RuntimeError as exc:  # a NaN abort in the fresh process too: retry with another seed
            if "NaN" not in str(exc) or attempt == 2:
                raise


def train_fasttext(positives: list[str], negatives: list[str], p: FastTextTrainParams | None = None):
    """Train a binary classifier (labels ``__label__pos`` / ``__label__neg``).

    Training runs in a freshly spawned process: fastText's supervised training reads heap memory
    it did not initialise, so in a long-lived process whose freed blocks hold garbage it fails
    with "Encountered NaN" (reproduced by filling and freeing blocks with 0xFF bytes first; a
    test guards this). A new process starts with a clean heap.
    """
    import fasttext

    p = p or FastTextTrainParams()
    with tempfile.TemporaryDirectory(prefix="codekiln-fasttext-") as tmp:
        train_file, model_file = os.path.join(tmp, "train.txt"), os.path.join(tmp, "model.bin")
        rows = [f"{POS} {one_line(t, p.max_chars)}" for t in positives] + [
            f"{NEG} {one_line(t, p.max_chars)}" for t in negatives
        ]
        np.random.default_rng(p.seed).shuffle(rows)
        Path(train_file).write_text("\n".join(rows) + "\n", encoding="utf-8")
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            pool.submit(_train_in_fresh_process, train_file, model_file, p).result()
        return fasttext.load_model(model_file)


def positive_scores(model, texts: list[str], max_chars: int = 20000) -> np.ndarray:
    """P(positive) per text."""
    if not texts:
        return np.empty(0)
    labels, probs = model.predict([one_line(t, max_chars) for t in texts], k=2)
    out = np.zeros(len(texts))
    for i, (ls, ps) in enumerate(zip(labels, probs, strict=True)):
        out[i] = dict(zip(ls, ps, strict=True)).get(POS, 0.0)
    return np.clip(out, 0, 1)


def save_model(model, path: Path) -> None:
    with atomic_path(path) as tmp:
        model.save_model(str(tmp))


KeepRule = step_params.KeepRule


def select(scores: np.ndarray, rule: KeepRule) -> np.ndarray:
    """Boolean keep mask for ``scores`` under ``rule``."""
    if rule.threshold is not None:
        return scores >= rule.threshold
    n_drop = int(round(rule.drop_bottom_fraction * scores.size))
    keep = np.ones(scores.size, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:n_drop]] = False
    return keep


class FastTextQuality(Step):
    """Score with a saved fastText model; ``metadata.quality_fasttext`` gets the score."""

    name = "fasttext_quality"
    requires = ("fasttext",)

    Params = step_params.FastTextQualityParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        import fasttext

        path = self.ctx.resolve(self.params.model)
        if not path.exists():
            raise FileNotFoundError(f"fasttext_quality: params.model {path} not found")
        model = fasttext.load_model(str(path))
        buffered = list(docs)
        scores = positive_scores(model, [d.text for d in buffered], self.params.max_chars)
        for d, s, k in zip(buffered, scores, select(scores, self.params), strict=True):
            d.metadata["quality_fasttext"] = round(float(s), 4)
            if k:
                yield d
            else:
                self.stats.rejects["low_quality_fasttext"] += 1


class FastTextTrain(Step):
    """Sink: train on documents whose ``metadata[label_key]`` is ``pos``/``neg`` and save the model (shards: 1)."""

    name = "fasttext_train"
    requires = ("fasttext",)

    Params = step_params.FastTextTrainStepParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        if world_size != 1:
            raise ValueError("fasttext_train must run in a stage with shards: 1")
        pos, neg = [], []
        for d in docs:
            label = d.metadata.get(self.params.label_key)
            if label in ("pos", "neg"):
                (pos if label == "pos" else neg).append(d.text)
            else:
                self.stats.rejects["unlabelled"] += 1
        if not pos or not neg:
            raise ValueError(f"fasttext_train: need both pos and neg documents (got {len(pos)} pos, {len(neg)} neg)")
        save_model(train_fasttext(pos, neg, self.params), self.ctx.resolve(self.params.output))
        return iter(())
