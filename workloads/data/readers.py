"""Readers: source trees, repositories, JSONL, Parquet, and the output of an earlier stage."""

from __future__ import annotations

import fnmatch
import gzip
import json
import os
import subprocess
import sysconfig
from collections.abc import Iterable, Iterator
from pathlib import Path

from codekiln.workloads.data import step_params, storage
from codekiln.workloads.data.base import Filter, Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.lang import language_of
from codekiln.workloads.data.storage import is_url
from codekiln.workloads.special_tokens import FILE_SEP, REPO_NAME

DEFAULT_EXCLUDES = step_params.DEFAULT_EXCLUDES


def expand_path(path: str) -> Path:
    """Expand ``$VARS``, ``~`` and ``{python_stdlib}`` (this interpreter's standard library)."""
    path = path.replace("{python_stdlib}", sysconfig.get_paths()["stdlib"])
    return Path(os.path.expanduser(os.path.expandvars(path)))

SourceParams = step_params.SourceParams


def list_files(root: Path, exclude: list[str]) -> list[Path]:
    """All regular files under ``root`` (sorted, excluded globs pruned)."""
    if root.is_file():
        return [root]
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not any(fnmatch.fnmatch(d, p) for p in exclude))
        for f in sorted(filenames):
            if not any(fnmatch.fnmatch(f, p) for p in exclude):
                p = Path(dirpath) / f
                if p.is_file() and not p.is_symlink():
                    out.append(p)
    return out


def load_source(path: Path, max_bytes: int) -> tuple[str | None, str]:
    """``(text, "")`` or ``(None, reason)`` for binary, oversized or undecodable files."""
    try:
        size = path.stat().st_size
        if size > max_bytes:
            return None, "too_large"
        data = path.read_bytes()
    except OSError:
        return None, "unreadable"
    if b"\x00" in data[:8192]:
        return None, "binary"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "not_utf8"


class ReadFiles(Step):
    """File-level documents from directories; language from extension or shebang."""

    name = "read_files"
    Params = SourceParams

    def _candidates(self) -> list[tuple[Path, Path]]:
        out = []
        for root in self.params.paths:
            r = expand_path(root)
            if not r.exists():
                raise FileNotFoundError(f"read_files: params.paths: {root} does not exist")
            out.extend((r, f) for f in list_files(r, self.params.exclude))
        out = out[:: self.params.every_nth]
        return out[: self.params.limit] if self.params.limit else out

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        for i, (root, path) in enumerate(self._candidates()):
            if i % world_size != rank:
                continue
            doc = self._read(root, path)
            if doc is not None:
                yield doc

    def _read(self, root: Path, path: Path, repo: str | None = None) -> Document | None:
        rel = str(path.relative_to(root)) if path != root else path.name
        lang = language_of(rel)
        if lang is None or lang == "c":  # shebang for any unknown name (dots included); `.h` by content
            text, _ = load_source(path, self.params.max_file_bytes)
            if text is not None:
                lang = language_of(rel, text, fallback=getattr(self.params, "detect_fallback", False))
        if lang is None or (self.params.languages and lang not in self.params.languages):
            self.drop(str(path), "language", lang, path=rel)
            return None
        text, why = load_source(path, self.params.max_file_bytes)
        if text is None:
            self.drop(str(path), why, path=rel)
            self.ctx.reject(str(path), why)
            return None
        name = repo or root.name
        meta = {"path": rel, "language": lang, "repo": name}
        doc_id = f"{name}/{rel}" if repo else str(path)
        return Document(id=doc_id, text=text, metadata=meta)


def git_repo_stats(repo: Path) -> dict:
    """Commit count, activity days and last-commit time of a git checkout (empty if not a repository)."""
    if not (repo / ".git").exists():
        return {}
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "log", "--format=%ct"], capture_output=True, text=True, check=True, timeout=60
        ).stdout.split()
    except (subprocess.SubprocessError, OSError):
        return {}
    if not out:
        return {}
    ts = [int(t) for t in out]
    return {"commits": len(ts), "activity_days": len({t // 86400 for t in ts}), "updated_ts": max(ts)}


RepoParams = step_params.RepoParams


class ReadRepos(ReadFiles):
    """Every sub-directory of ``paths`` is a repository; shards split by repository."""

    name = "read_repos"
    Params = RepoParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        meta_by_name = {}
        if self.params.metadata_file:
            with open(self.params.metadata_file, encoding="utf-8") as fh:
                meta_by_name = {r["name"]: r for r in map(json.loads, filter(str.strip, fh))}
        repos = sorted(
            p
            for root in self.params.paths
            for p in Path(root).iterdir()
            if p.is_dir() and not any(fnmatch.fnmatch(p.name, x) for x in self.params.exclude)
        )
        repos = repos[:: self.params.every_nth][: self.params.limit or None]
        for i, repo in enumerate(repos):
            if i % world_size != rank:
                continue
            extra = {
                k: v for k, v in {**git_repo_stats(repo), **meta_by_name.get(repo.name, {})}.items() if k != "name"
            }
            files = [d for f in list_files(repo, self.params.exclude) if (d := self._read(repo, f, repo.name))]
            for d in files:
                d.metadata.update(extra)
            if self.params.level == "file":
                yield from files
            elif files:
                text = f"{REPO_NAME}{repo.name}\n" + "".join(f"{FILE_SEP}{d.metadata['path']}\n{d.text}" for d in files)
                yield Document(
                    id=repo.name,
                    text=text,
                    metadata={
                        "repo": repo.name,
                        "language": files[0].metadata["language"],
                        "files": len(files),
                        **extra,
                    },
                )


class RepoMetadataFilter(Filter):
    """Keep repositories meeting thresholds (Seed-Coder's commit-data defaults); absent fields pass unless required."""

    name = "repo_metadata_filter"

    Params = step_params.RepoMetadataFilterParams

    def keep(self, doc: Document) -> bool | str:
        p = self.params
        for key, lo in (
            ("stars", p.min_stars),
            ("forks", p.min_forks),
            ("commits", p.min_commits),
            ("activity_days", p.min_activity_days),
        ):
            value = doc.metadata.get(key)
            if value is None:
                if p.require_metadata:
                    return f"missing_{key}"
            elif float(value) < lo:
                return f"{key}_below_{lo}"
        return True


class ReadJsonl(Step):
    """Documents from JSONL files (``.jsonl`` / ``.jsonl.gz``); malformed lines go to the rejects file."""

    name = "read_jsonl"

    Params = step_params.ReadJsonlParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        files = _input_files(self.params.paths, (".jsonl", ".jsonl.gz", ".json"))
        for i, f in enumerate(files):
            if i % world_size != rank:
                continue
            name = f.rsplit("/", 1)[-1]
            with _open_text(f) as fh:
                for n, line in enumerate(fh, 1):
                    if not line.strip():
                        continue
                    try:
                        rec = json.loads(line)
                        yield Document.from_record(
                            rec, text_key=self.params.text_key, id_key=self.params.id_key, default_id=f"{name}:{n}"
                        )
                    except ValueError as exc:
                        self.drop(f"{f}:{n}", "malformed", str(exc), path=str(f))
                        self.ctx.reject(f"{f}:{n}", str(exc), line.rstrip()[:2000])


def _input_files(paths: list[str], suffixes: tuple[str, ...]) -> list[str]:
    """Files under local paths or fsspec URLs, sorted (URLs stay URLs)."""
    out: list[str] = []
    for p in paths:
        if is_url(p):
            found = storage.list_files(p, suffixes)
            if not found:
                raise FileNotFoundError(f"params.paths: no {'/'.join(suffixes)} files under {p}")
            out += found
        else:
            root = expand_path(p)
            if not root.exists():
                raise FileNotFoundError(f"params.paths: {p} does not exist")
            out += [str(f) for f in list_files(root, []) if f.name.endswith(suffixes)]
    return sorted(out)


def _open_text(f: str):
    if is_url(f):
        return storage.open_url(f, "rt", encoding="utf-8", errors="replace", compression="infer")
    opener = gzip.open if f.endswith(".gz") else open
    return opener(f, "rt", encoding="utf-8", errors="replace")


class ReadParquet(Step):
    """Documents from Parquet files, one row group batch at a time."""

    name = "read_parquet"
    requires = ("pyarrow",)

    Params = step_params.ReadParquetParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        import pyarrow.parquet as pq

        yield from docs
        files = _input_files(self.params.paths, (".parquet",))
        for i, f in enumerate(files):
            if i % world_size != rank:
                continue
            pf = pq.ParquetFile(storage.open_url(f) if is_url(f) else f)
            base = f.rsplit("/", 1)[-1]
            if self.params.text_key not in pf.schema_arrow.names:
                raise ValueError(f"read_parquet: {f} has no column params.text_key={self.params.text_key!r}")
            n = 0
            for batch in pf.iter_batches(batch_size=self.params.batch_rows):
                for rec in batch.to_pylist():
                    n += 1
                    try:
                        yield Document.from_record(
                            rec, text_key=self.params.text_key, id_key=self.params.id_key, default_id=f"{base}:{n}"
                        )
                    except ValueError as exc:
                        self.drop(f"{f}:{n}", "malformed", str(exc), path=str(f))
                        self.ctx.reject(f"{f}:{n}", str(exc), rec)


class ReadHfDataset(Step):
    """Documents from a Hugging Face dataset: a ``save_to_disk`` folder (local or fsspec URL) or a Hub name.

    Rows are split over shards by index (``rank::world_size``), so the result does not depend on the shard count.
    """

    name = "read_hf_dataset"
    requires = ("datasets",)

    Params = step_params.ReadHfDatasetParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        ds = load_hf_dataset(self.params.path, self.params.split, self.params.name)
        if self.params.text_key not in ds.column_names:
            where = f"read_hf_dataset: {self.params.path}"
            raise ValueError(f"{where}: no column params.textKey={self.params.text_key!r}")
        for lo in range(rank * self.params.batch_rows, len(ds), self.params.batch_rows * world_size):
            batch = ds[lo : lo + self.params.batch_rows]
            keys = list(batch)
            for k in range(len(batch[self.params.text_key])):
                rec = {key: batch[key][k] for key in keys}
                try:
                    yield Document.from_record(
                        rec, text_key=self.params.text_key, id_key=self.params.id_key, default_id=f"row-{lo + k}"
                    )
                except ValueError as exc:
                    self.drop(f"row-{lo + k}", "malformed", str(exc), path=self.params.path)


def load_hf_dataset(path: str, split: str | None = None, name: str | None = None):
    """``datasets.load_from_disk`` for a saved folder (local or URL), else ``load_dataset`` (Hub name, online)."""
    import datasets

    markers = ("dataset_info.json", "dataset_dict.json")
    if is_url(path):
        saved = not path.startswith("hf://") and any(storage.exists(storage.join(path, m)) for m in markers)
    else:
        saved = any((Path(path) / m).exists() for m in markers)
    if saved:
        ds = datasets.load_from_disk(path)
    else:
        ds = datasets.load_dataset(path, name, split=split or "train")
    if isinstance(ds, datasets.DatasetDict):
        if split is None and len(ds) != 1:
            raise ValueError(f"read_hf_dataset: {path} has splits {sorted(ds)}; set params.split")
        ds = ds[split or next(iter(ds))]
    return ds


class ReadStage(Step):
    """Documents written by an earlier stage. With equal shard counts shard ``r`` reads shard ``r`` (same sharding)."""

    name = "read_stage"

    Params = step_params.ReadStageParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        src = self.params.stage
        shards = self.ctx.stage_shards.get(src)
        if shards is None:
            raise ValueError(f"read_stage: params.stage {src!r} is not a stage of this pipeline")
        folder = self.ctx.stage_dir(src)
        missing = [r for r in range(shards) if not (folder / "_markers" / f"shard-{r:05d}.done").exists()]
        if missing:
            raise RuntimeError(f"read_stage: stage {src!r} has unfinished shards {missing[:10]}; run it first")
        for r in range(shards):
            if r % world_size != rank:
                continue
            for i, rec in enumerate(_iter_jsonl(folder / "data" / f"shard-{r:05d}.jsonl")):
                doc = Document(rec["id"], rec["text"], rec.get("metadata", {}))
                doc.origin = (src, r, i)
                yield doc


def _iter_jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)
