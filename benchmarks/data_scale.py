"""A 1M-document DataPipeline run on this machine: time per stage and peak memory.

Synthetic tiny code documents (~150 bytes) with planted exact duplicates (every 10th document repeats one
3 earlier) and near duplicates (every 10th, offset 5, the previous one plus a comment line), written as
JSONL parts, then: ingest (read_jsonl, N shards) → dedup (exact + MinHash near dedup block: hashes, buckets,
cluster, filter) → tokenizer (bounded reservoir) → pack.

    python benchmarks/data_scale.py [--docs 1000000] [--shards 4] [--cluster-shards 4] [--engine oph]

Last line: one JSON object with the seconds per stage, documents in/out, peak RSS (this process and the
largest shard process) and the dedup counts against the planted ones.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import time
from pathlib import Path

from codekiln.workloads.data.runner import parse_pipeline, run_pipeline

WORDS = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "epsilon",
    "zeta",
    "eta",
    "theta",
    "iota",
    "kappa",
    "lambda",
    "mu",
    "nu",
    "xi",
    "omicron",
    "pi",
    "rho",
    "sigma",
    "tau",
]


def doc_text(i: int) -> str:
    w = [WORDS[(i * k + k * k) % len(WORDS)] for k in range(1, 9)]
    return (
        f"def {w[0]}_{i}({w[1]}, {w[2]}):\n"
        f"    {w[3]} = {w[1]} * {i % 97} + {w[2]}\n"
        f"    return {w[4]}_{i // 7}({w[3]}, {w[5]}, {w[6]}_{i % 13}, {w[7]})\n"
    )


def write_corpus(src: Path, n: int, parts: int) -> dict:
    src.mkdir(parents=True, exist_ok=True)
    handles = [open(src / f"part-{p:03d}.jsonl", "w", encoding="utf-8") for p in range(parts)]  # noqa: SIM115
    exact = near = 0
    for i in range(n):
        if i % 10 == 0 and i:
            text, exact = doc_text(i - 3), exact + 1
        elif i % 10 == 5 and i > 5:
            text, near = doc_text(i - 1) + "    # checked\n", near + 1
        else:
            text = doc_text(i)
        handles[i % parts].write(json.dumps({"id": f"doc-{i:07d}", "text": text}) + "\n")
    for h in handles:
        h.close()
    return {"planted_exact": exact, "planted_near": near}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--docs", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--out", default="/tmp/codekiln-scale")
    ap.add_argument("--cluster-shards", type=int, default=0, help="shards of the cluster stage (0: --shards)")
    ap.add_argument("--engine", default="oph", help="MinHash engine: oph, rensa or numpy")
    args = ap.parse_args()
    load_start = os.getloadavg()
    root = Path(args.out)
    shutil.rmtree(root, ignore_errors=True)
    t0 = time.perf_counter()
    planted = write_corpus(root / "src", args.docs, 8)
    t_write = time.perf_counter() - t0
    n = args.shards
    res = {
        "apiVersion": "codekiln.dev/v1alpha1",
        "kind": "DataPipeline",
        "metadata": {"name": "scale"},
        "spec": {
            "pipeline": {
                "outputDir": str(root / "out"),
                "stages": [
                    {"name": "ingest", "shards": n, "steps": [{"readJsonl": {"paths": [str(root / "src")]}}]},
                    {
                        "name": "dedup",
                        "shards": n,
                        "input": "ingest",
                        "dedup": {
                            "exact": {},
                            "near": {
                                "threshold": 0.8,
                                "numPerm": 128,
                                "bucketShards": n,
                                "clusterShards": args.cluster_shards or n,
                                "engine": args.engine,
                            },
                        },
                        "steps": [],
                    },
                    {
                        "name": "tokenizer",
                        "shards": 1,
                        "input": "dedup",
                        "steps": [{"trainTokenizer": {"vocabSize": 2000, "sampleDocs": 50_000}}],
                    },
                    {"name": "pack", "shards": n, "input": "dedup", "steps": [{"pack": {"seqLen": 2048}}]},
                ],
            }
        },
    }
    config = parse_pipeline(res)
    t0 = time.perf_counter()
    totals = run_pipeline(config, processes=args.processes)
    wall = time.perf_counter() - t0
    stages = {
        name: {
            "cpu_s_in_steps": round(sum(s.time_s for s in steps), 1),
            "docs_in": max((s.docs_in for s in steps), default=0),
            "docs_out": steps[-1].docs_out if steps else 0,
            "rejects": {k: v for s in steps for k, v in s.rejects.items()},
        }
        for name, steps in totals.items()
    }
    times_file = root / "out" / "stage_times.json"
    timings = json.loads(times_file.read_text()) if times_file.exists() else {}
    self_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result = {
        "name": "data_scale",
        "metric": "wall_seconds_1m_docs",
        "unit": "s",
        "ours": round(wall, 1),
        "docs": args.docs,
        "shards": n,
        "processes": args.processes,
        "cluster_shards": args.cluster_shards or n,
        "engine": args.engine,
        "load_average_1m_5m_15m_at_start": [round(x, 1) for x in load_start],
        "write_corpus_s": round(t_write, 1),
        "stage_wall_s": timings,
        "stages": stages,
        "peak_rss_mb": {"runner": round(self_rss), "largest_shard_process": round(child_rss)},
        "planted": planted,
        "machine": "cpu-2core (shared VM; load from other jobs)",
        "load_average_1m": round(os.getloadavg()[0], 1),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
