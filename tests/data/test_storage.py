"""Object storage: a DataPipeline reads inputs from and writes every output to a real S3 HTTP server (moto)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from codekiln.workloads.data.executor import run_shard
from codekiln.workloads.data.runner import parse_pipeline, run_pipeline

from .conftest import STDLIB, pipeline_resource, stage

moto_server = pytest.importorskip("moto.server", reason="moto[server] is not installed")
pytest.importorskip("s3fs", reason="s3fs is not installed")


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory):
    """A moto S3 server on localhost; credentials and endpoint through the standard AWS variables."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    mp = pytest.MonkeyPatch()
    for k, v in {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_ENDPOINT_URL": f"http://{host}:{port}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "CODEKILN_DATA_CACHE": str(tmp_path_factory.mktemp("cache")),
    }.items():
        mp.setenv(k, v)
    import s3fs

    fs = s3fs.S3FileSystem()
    fs.mkdir("bucket")
    yield fs
    mp.undo()
    server.stop()


def _put_inputs(fs) -> int:
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((STDLIB / "json").glob("*.py")) + sorted((STDLIB / "email").glob("*.py"))[:20]
    recs = [{"id": str(f), "text": f.read_text(), "metadata": {"language": "python", "path": f.name}} for f in files]
    recs.append({"id": "copy", "text": recs[0]["text"], "metadata": {"language": "python", "path": "copy.py"}})
    for k in range(3):
        fs.pipe(f"bucket/in/part-{k}.jsonl", "".join(json.dumps(r) + "\n" for r in recs[k::3]).encode())
    with fs.open("bucket/pq/rows.parquet", "wb") as fh:
        pq.write_table(pa.table({"id": [r["id"] + "#pq" for r in recs[:5]], "text": [r["text"] for r in recs[:5]]}), fh)
    ds = datasets.Dataset.from_dict({"id": [f"hf-{i}" for i in range(4)], "text": [r["text"] for r in recs[5:9]]})
    ds.save_to_disk("s3://bucket/hf")
    return len(recs)


def _resource(out: str) -> dict:
    return pipeline_resource(
        out,
        [
            stage("ingest", 2, ("read_jsonl", {"paths": ["s3://bucket/in/"]}), "syntax_filter"),
            stage("pq", 1, ("read_parquet", {"paths": ["s3://bucket/pq"]})),
            stage("hf", 2, ("read_hf_dataset", {"path": "s3://bucket/hf"})),
            stage(
                "curated",
                2,
                ("write_parquet", {"output": "s3://bucket/curated/" + out.rsplit("/", 1)[-1]}),
                input="ingest",
                dedup={"exact": {}, "near": {"numPerm": 64, "bands": 8, "rows": 8, "bucketShards": 2}},
            ),
        ],
    )


def _docs(fs, prefix: str, stage_name: str) -> list[tuple[str, str]]:
    out = []
    for key in sorted(fs.find(f"{prefix}/{stage_name}/data")):
        out += [(r["id"], r["text"]) for r in map(json.loads, fs.cat(key).decode().splitlines()) if r]
    return sorted(out)


def test_pipeline_on_s3_reads_writes_and_resumes(s3, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import pyarrow.parquet as pq

    n = _put_inputs(s3)
    clean = run_pipeline(parse_pipeline(_resource("s3://bucket/clean")))
    assert clean["ingest"][0].docs_out == n and clean["pq"][0].docs_out == 5 and clean["hf"][0].docs_out == 4
    s3.invalidate_cache()
    assert s3.exists("bucket/clean/stats.json") and s3.exists("bucket/clean/curated-cluster/_markers/shard-00000.done")
    assert s3.exists("bucket/clean/ingest/dropped/shard-00000.jsonl.gz")
    curated = _docs(s3, "bucket/clean", "curated")
    assert len(curated) == n - 1  # the planted copy is gone
    table = pq.read_table("bucket/curated/clean", filesystem=s3)
    assert sorted(table.column("id").to_pylist()) == sorted(i for i, _ in curated)

    # a run killed after one shard: shard 0 of ingest finished (objects + marker), the pod is gone
    config = parse_pipeline(_resource("s3://bucket/resumed"))
    run_shard(config, "ingest", 0)
    s3.invalidate_cache()
    done = s3.info("bucket/resumed/ingest/data/shard-00000.jsonl")["ETag"], s3.info(
        "bucket/resumed/ingest/_markers/shard-00000.done"
    )["LastModified"]
    assert not s3.exists("bucket/resumed/ingest/_markers/shard-00001.done")
    monkeypatch.setenv("CODEKILN_DATA_CACHE", str(tmp_path / "fresh-pod"))  # nothing local survives
    resumed = run_pipeline(config)
    s3.invalidate_cache()
    assert (
        s3.info("bucket/resumed/ingest/data/shard-00000.jsonl")["ETag"],
        s3.info("bucket/resumed/ingest/_markers/shard-00000.done")["LastModified"],
    ) == done  # not rerun: skipped from its marker object
    assert resumed["ingest"][0].docs_out == n  # shard 0's stats came back from its marker object
    s3.invalidate_cache()
    for name in ("ingest", "curated"):
        assert _docs(s3, "bucket/resumed", name) == _docs(s3, "bucket/clean", name)
