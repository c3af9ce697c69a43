"""Atomic writes: concurrent writers of one path never clobber each other's temp file."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest

from codekiln.workloads.atomic_io import atomic_path, atomic_write_text


def _hammer(path: str, tag: str, n: int) -> None:
    for i in range(n):
        atomic_write_text(Path(path), f"{tag}-{i}\n" * 64)


def test_concurrent_writers_of_one_path_all_succeed(tmp_path: Path) -> None:
    # Two shards that finish together both publish meta.json (the CI failure this guards).
    target = tmp_path / "meta.json"
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(str(target), tag, 300)) for tag in ("a", "b", "c")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    lines = set(target.read_text().splitlines())
    assert len(lines) == 1 and lines.pop() in {"a-299", "b-299", "c-299"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["meta.json"]


def test_failed_write_leaves_old_content_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_temp_names_are_hidden_from_globs(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "band-001.npy", keep_suffix=True) as tmp:
        assert tmp.suffix == ".npy" and tmp.name.startswith(".")
        assert list(tmp_path.glob("band-*.npy")) == []
        tmp.write_bytes(b"x")
    assert [p.name for p in tmp_path.glob("band-*.npy")] == ["band-001.npy"]
