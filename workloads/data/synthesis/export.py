"""Write training files from synthesized documents: SFT chats and DPO pairs (documents pass through).

* ``export_sft``: ``{"messages": [{user: instruction}, {assistant: response}], "weight": sample_weight}``
  lines — the chat JSONL a PretrainRun with ``objective: sft`` reads.
* ``export_dpo``: ``{"prompt", "chosen", "rejected"}`` lines (TRL's preference format).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import AtomicJsonlWriter, Document
from codekiln.workloads.data.synthesis.params import ExportParams


class _Export(Step):
    Params = ExportParams

    def record(self, doc: Document) -> dict | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        out = AtomicJsonlWriter(self.ctx.resolve(self.params.path) / f"{self.ctx.shard_name(rank)}.jsonl")
        try:
            for doc in docs:
                rec = self.record(doc)
                if rec is None:
                    self.drop(doc, f"{self.name}_missing_fields")
                    continue
                out.write(rec)
                self.stats.counters["records_written"] += 1
                yield doc
        except BaseException:
            out.discard()
            raise
        out.close()


class ExportSFT(_Export):
    """Documents with ``instruction`` and ``response`` → SFT chat lines."""

    name = "export_sft"

    def record(self, doc: Document) -> dict | None:
        m = doc.metadata
        if not m.get("instruction") or not m.get("response"):
            return None
        rec = {"messages": [{"role": "user", "content": m["instruction"]},
                            {"role": "assistant", "content": m["response"]}], "id": doc.id}
        if "sample_weight" in m:
            rec["weight"] = m["sample_weight"]
        return rec


class ExportDPO(_Export):
    """Documents with ``prompt``, ``chosen`` and ``rejected`` → preference lines."""

    name = "export_dpo"

    def record(self, doc: Document) -> dict | None:
        m = doc.metadata
        if not all(isinstance(m.get(k), str) for k in ("prompt", "chosen", "rejected")):
            return None
        return {"prompt": m["prompt"], "chosen": m["chosen"], "rejected": m["rejected"], "id": doc.id}
