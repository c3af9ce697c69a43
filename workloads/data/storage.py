"""Object storage for DataPipelines: any path may be a local path or an fsspec URL.

``s3://`` (s3fs), ``gs://`` (gcsfs), ``hf://`` (huggingface_hub's ``HfFileSystem``), ``memory://`` and the rest
of fsspec's registry. Credentials come from each back end's standard environment variables
(``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_ENDPOINT_URL`` for S3 and S3-compatible stores,
``GOOGLE_APPLICATION_CREDENTIALS`` for GCS, ``HF_TOKEN`` for the Hub), which the operator passes from a Secret.

When ``outputDir`` is a URL, each shard runs against a local mirror (``StageMirror``): files of earlier stages
are fetched before the shard runs, what the shard wrote is uploaded when it succeeds, and the completion
marker is uploaded last. An object PUT is all-or-nothing, so an object is never half written; a killed
shard leaves no marker and reruns, overwriting any objects it had uploaded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

CACHE_ENV = "CODEKILN_DATA_CACHE"


def is_url(path: str | os.PathLike) -> bool:
    """True for ``scheme://…`` paths (``file://`` included)."""
    return "://" in str(path)


def filesystem(url: str):
    """``(fs, path_inside_fs)`` for a URL (fsspec; credentials from the environment)."""
    import fsspec

    return fsspec.core.url_to_fs(url)


def join(base: str, *parts: str) -> str:
    """``base/part/...`` for URLs and local paths alike."""
    return "/".join([str(base).rstrip("/"), *(p.strip("/") for p in parts)])


def list_files(root: str, suffixes: tuple[str, ...]) -> list[str]:
    """Sorted URLs of files under ``root`` (or ``root`` itself) whose names end with one of ``suffixes``."""
    fs, path = filesystem(root)
    if fs.isfile(path):
        found = [path]
    else:
        found = [p for p in fs.find(path) if p.endswith(suffixes)]
    proto = root.split("://", 1)[0]
    return sorted(f"{proto}://{p}" for p in found if p.endswith(suffixes))


def open_url(url: str, mode: str = "rb", **kwargs):
    """``fsspec.open(url, mode).open()`` (compression by suffix when ``compression='infer'``)."""
    import fsspec

    return fsspec.open(url, mode, **kwargs).open()


def exists(url: str) -> bool:
    fs, path = filesystem(url)
    return fs.exists(path)


def write_bytes(url: str, data: bytes) -> None:
    """One PUT (an object appears whole or not at all)."""
    fs, path = filesystem(url)
    fs.pipe_file(path, data)


def read_bytes(url: str) -> bytes:
    fs, path = filesystem(url)
    return fs.cat_file(path)


class StageMirror:
    """A local working copy of a remote ``outputDir`` for one shard.

    Args:
        remote: the ``outputDir`` URL.
        cache: the local folder (default ``$CODEKILN_DATA_CACHE`` or a temp folder keyed by the URL).
    """

    def __init__(self, remote: str, cache: Path | None = None) -> None:
        self.remote = remote.rstrip("/")
        if cache is None:
            base = os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "codekiln-data-cache")
            cache = Path(base) / hashlib.sha256(self.remote.encode()).hexdigest()[:16]
        self.local = cache
        self.local.mkdir(parents=True, exist_ok=True)
        self.fs, self.root = filesystem(self.remote)

    def remote_of(self, local: Path) -> str:
        return join(self.remote, local.relative_to(self.local).as_posix())

    def marker_exists(self, rel: str) -> bool:
        self.fs.invalidate_cache()
        return self.fs.exists(join(self.root, rel))

    def read_marker(self, rel: str) -> bytes:
        return self.fs.cat_file(join(self.root, rel))

    def fetch(self, skip_stage: str | None = None) -> int:
        """Download every remote file missing locally (or with another size), except ``skip_stage``'s; count."""
        self.fs.invalidate_cache()
        n = 0
        if not self.fs.exists(self.root):
            return 0
        for path, info in self.fs.find(self.root, detail=True).items():
            rel = path[len(self.root.rstrip("/")) + 1 :]
            if not rel or (skip_stage and rel.split("/", 1)[0] == skip_stage):
                continue
            dest = self.local / rel
            if dest.exists() and dest.stat().st_size == info.get("size"):
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part")
            self.fs.get_file(path, str(tmp))
            os.replace(tmp, dest)
            n += 1
        return n

    def snapshot(self) -> dict[str, tuple[int, int]]:
        """(size, mtime_ns) of every local file, to find what a shard wrote."""
        out = {}
        for p in self._walk():
            st = p.stat()
            out[p.relative_to(self.local).as_posix()] = (st.st_size, st.st_mtime_ns)
        return out

    def _walk(self) -> Iterator[Path]:
        for dirpath, _, files in os.walk(self.local):
            for f in files:
                if ".tmp-" not in f and not f.endswith(".part"):
                    yield Path(dirpath) / f

    def upload_changed(self, before: dict[str, tuple[int, int]], last: str | None = None) -> int:
        """Upload files new or changed since ``before``; ``last`` (the marker) goes after all others."""
        changed = [rel for rel, sig in self.snapshot().items() if before.get(rel) != sig and rel != last]
        for rel in sorted(changed):
            self.fs.put_file(str(self.local / rel), join(self.root, rel))
        if last is not None and (self.local / last).exists():
            self.fs.put_file(str(self.local / last), join(self.root, last))
        return len(changed)
