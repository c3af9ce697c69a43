"""Parquet output for curated documents: documents pass through and are also written per shard."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from codekiln.workloads.atomic_io import atomic_path
from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.storage import is_url, join


class WriteParquet(Step):
    """Pass-through sink: ``<output>/shard-NNNNN.parquet`` with columns id, text, metadata (JSON), language, path.

    Local outputs are written to a temp file and renamed; fsspec URLs get one PUT of the finished file.
    """

    name = "write_parquet"
    requires = ("pyarrow",)
    Params = step_params.WriteParquetParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema(
            [
                ("id", pa.string()),
                ("text", pa.string()),
                ("language", pa.string()),
                ("path", pa.string()),
                ("metadata", pa.string()),
            ]
        )
        rows: dict[str, list] = {k: [] for k in schema.names}
        out = self.params.output
        target = (
            join(out, f"{self.ctx.shard_name()}.parquet")
            if is_url(out)
            else self.ctx.resolve(out) / (f"{self.ctx.shard_name()}.parquet")
        )
        local = target if isinstance(target, Path) else None
        with atomic_path(
            local or self.ctx.stage_dir() / ".parquet-upload" / Path(target).name, keep_suffix=True
        ) as tmp:
            writer = pq.ParquetWriter(tmp, schema)
            try:
                for d in docs:
                    rows["id"].append(d.id)
                    rows["text"].append(d.text)
                    rows["language"].append(d.metadata.get("language"))
                    rows["path"].append(d.metadata.get("path"))
                    rows["metadata"].append(json.dumps(d.metadata, ensure_ascii=False, default=str))
                    if len(rows["id"]) >= self.params.rows_per_group:
                        writer.write_table(pa.table(rows, schema=schema))
                        rows = {k: [] for k in schema.names}
                    yield d
                writer.write_table(pa.table(rows, schema=schema))
            finally:
                writer.close()
            if local is None:
                from codekiln.workloads.data.storage import filesystem

                fs, path = filesystem(str(target))
                fs.put_file(str(tmp), path)
