"""Git history reader: one document per non-merge commit (message, diff, changed files, parent for the snapshot)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from pathlib import Path

from codekiln.workloads.data import step_params
from codekiln.workloads.data.base import Step
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.readers import git_repo_stats


def git(repo: Path, *args: str, input_bytes: bytes | None = None) -> bytes:
    """Run ``git -C repo args`` and return stdout (raises ``RuntimeError`` with stderr on failure)."""
    proc = subprocess.run(["git", "-C", str(repo), *args], input=input_bytes, capture_output=True, timeout=300)
    if proc.returncode:
        raise RuntimeError(f"git {' '.join(args[:3])} in {repo}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


class BlobReader:
    """Reads files of any revision through one ``git cat-file --batch`` process."""

    def __init__(self, repo: Path) -> None:
        self._proc = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def read(self, rev: str, path: str) -> bytes | None:
        assert self._proc.stdin and self._proc.stdout
        self._proc.stdin.write(f"{rev}:{path}\n".encode())
        self._proc.stdin.flush()
        header = self._proc.stdout.readline().split()
        if len(header) < 3 or header[1] != b"blob":
            return None
        data = self._proc.stdout.read(int(header[2]))
        self._proc.stdout.read(1)
        return data

    def close(self) -> None:
        if self._proc.stdin:
            self._proc.stdin.close()
        self._proc.wait(timeout=30)


def list_tree(repo: Path, rev: str) -> list[tuple[str, int]]:
    """(path, size) of every blob in ``rev``."""
    out = []
    for line in git(repo, "ls-tree", "-r", "-l", "-z", rev).split(b"\0"):
        if not line:
            continue
        meta, path = line.split(b"\t", 1)
        parts = meta.split()
        if parts[1] == b"blob":
            out.append((path.decode(errors="replace"), int(parts[3]) if parts[3] != b"-" else 0))
    return out


class ReadGitHistory(Step):
    """Commits of git repositories (shards split commits); repository stats attached for thresholding."""

    name = "read_git_history"

    Params = step_params.ReadGitHistoryParams

    def run(self, docs: Iterable[Document], rank: int, world_size: int) -> Iterator[Document]:
        yield from docs
        n = 0
        for repo_s in self.params.repos:
            repo = Path(repo_s).resolve()
            if not repo.exists():
                raise FileNotFoundError(f"read_git_history: params.repos: {repo_s} does not exist")
            stats = git_repo_stats(repo)
            args = ["log", "--no-merges", "--format=%H%x00%P%x00%ct%x00%B%x1e"]
            if self.params.max_commits:
                args.append(f"-n{self.params.max_commits}")
            for record in git(repo, *args).decode(errors="replace").split("\x1e"):
                record = record.strip("\n")
                if not record:
                    continue
                sha, parents, ts, message = record.split("\x00", 3)
                n += 1
                if (n - 1) % world_size != rank:
                    continue
                parent = parents.split()[0] if parents.split() else None
                if parent is None:
                    self.stats.rejects["root_commit"] += 1
                    continue
                numstat = git(repo, "diff", "--numstat", "-z", "--no-renames", parent, sha).decode(errors="replace")
                files = _parse_numstat(numstat)
                diff = git(repo, "diff", "--no-color", "--no-renames", "--no-ext-diff", parent, sha)
                yield Document(
                    id=f"{repo.name}@{sha[:12]}",
                    text=diff.decode("utf-8", errors="replace"),
                    metadata={
                        "repo": repo.name,
                        "repo_path": str(repo),
                        "commit": sha,
                        "parent": parent,
                        "message": message.strip(),
                        "updated_ts": int(ts),
                        "files": files,
                        "language": "diff",
                        **stats,
                    },
                )


def _parse_numstat(out: str) -> list[dict]:
    files = []
    for entry in out.split("\0"):
        if not entry.strip():
            continue
        added, deleted, path = entry.split("\t", 2)
        binary = added == "-"
        files.append(
            {
                "path": path.strip(),
                "added": 0 if binary else int(added),
                "deleted": 0 if binary else int(deleted),
                "binary": binary,
            }
        )
    return files
