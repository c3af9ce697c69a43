"""SWE-style tasks: a repository snapshot, a problem statement, FAIL_TO_PASS / PASS_TO_PASS test ids.

JSONL, one task per line (SWE-bench field names where they exist)::

    {"instance_id": "statistics-12", "repo": "repos/statistics-12",      # folder or .tar/.tar.gz
     "problem_statement": "...", "FAIL_TO_PASS": ["tests/test_statistics.py::test_median"],
     "PASS_TO_PASS": [...], "setup_commands": [], "patch": "<unified diff of the fix>",
     "reference_calls": [{"name": "str_replace", "arguments": {...}}, {"name": "submit", "arguments": {}}]}

A relative ``repo`` is resolved against the JSONL file's folder. A task is resolved when every
FAIL_TO_PASS test passes and every PASS_TO_PASS test still passes (SWE-bench's rule); before the
final run the test files are restored from the snapshot, so editing the tests never pays.
"""

from __future__ import annotations

import base64
import io
import json
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

MAX_SNAPSHOT_BYTES = 32 << 20


@dataclass(frozen=True)
class SweTask:
    """One repository task."""

    instance_id: str
    repo: str
    problem_statement: str
    fail_to_pass: list[str]
    pass_to_pass: list[str] = field(default_factory=list)
    setup_commands: list[str] = field(default_factory=list)
    patch: str = ""
    reference_calls: list[dict] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.instance_id

    @property
    def tests(self) -> list[str]:
        return [*self.fail_to_pass, *self.pass_to_pass]

    @property
    def test_files(self) -> list[str]:
        return sorted({t.split("::", 1)[0] for t in self.tests})

    def to_json(self) -> dict:
        d = asdict(self)
        d["FAIL_TO_PASS"], d["PASS_TO_PASS"] = d.pop("fail_to_pass"), d.pop("pass_to_pass")
        return d

    def snapshot(self) -> dict[str, bytes]:
        """The repository files ``{relpath: bytes}`` (from the folder or the archive)."""
        root = Path(self.repo)
        out: dict[str, bytes] = {}
        total = 0
        if root.is_dir():
            for p in sorted(root.rglob("*")):
                if p.is_file() and "__pycache__" not in p.parts:
                    out[p.relative_to(root).as_posix()] = data = p.read_bytes()
                    total += len(data)
        elif root.is_file():
            with tarfile.open(root) as tar:
                for m in tar.getmembers():
                    if m.isfile():
                        fh = tar.extractfile(m)
                        name = m.name.removeprefix("./")
                        if fh is not None and not name.startswith("/") and ".." not in Path(name).parts:
                            out[name] = data = fh.read()
                            total += len(data)
        else:
            raise ValueError(f"task {self.instance_id}: repo {self.repo} is neither a folder nor an archive")
        if total > MAX_SNAPSHOT_BYTES:
            raise ValueError(f"task {self.instance_id}: repo snapshot is {total} bytes (max {MAX_SNAPSHOT_BYTES})")
        return out


def snapshot_payload(files: dict[str, bytes]) -> dict:
    """``files`` / ``files_b64`` for a session create request (text as text, binary as base64)."""
    text, binary = {}, {}
    for path, data in files.items():
        try:
            text[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            binary[path] = base64.b64encode(data).decode()
    return {"files": text, **({"files_b64": binary} if binary else {})}


def archive_bytes(files: dict[str, bytes]) -> bytes:
    """A tar.gz of ``files`` (for tasks stored as archives)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for path, data in sorted(files.items()):
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _row_to_task(row: dict, base: Path, where: str) -> SweTask:
    def strings(key: str, required: bool = False) -> list[str]:
        value = row.get(key, [] if not required else None)
        if isinstance(value, str):  # SWE-bench stores these lists as JSON strings
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError(f"{where}: {key} must be a list of strings (or its JSON text)") from None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"{where}: {key} must be a list of strings")
        return value

    for key in ("instance_id", "repo", "problem_statement"):
        if not isinstance(row.get(key), str) or not row[key]:
            raise ValueError(f"{where}: {key} is required (a non-empty string)")
    repo = Path(row["repo"])
    repo = repo if repo.is_absolute() else base / repo
    calls = row.get("reference_calls", [])
    if not isinstance(calls, list) or not all(isinstance(c, dict) and "name" in c for c in calls):
        raise ValueError(f"{where}: reference_calls must be a list of {{name, arguments}} objects")
    f2p = strings("FAIL_TO_PASS", required=True)
    if not f2p:
        raise ValueError(f"{where}: FAIL_TO_PASS must name at least one test")
    return SweTask(
        instance_id=row["instance_id"], repo=str(repo), problem_statement=row["problem_statement"],
        fail_to_pass=f2p, pass_to_pass=strings("PASS_TO_PASS"), setup_commands=strings("setup_commands"),
        patch=str(row.get("patch", "")), reference_calls=calls,
    )


def load_swe_tasks(path: str | Path, limit: int | None = None) -> list[SweTask]:
    """Tasks of a JSONL file; errors name the line and the field."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"tasks.path {path}: no such file")
    tasks = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"tasks.path {path}:{n}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise ValueError(f"tasks.path {path}:{n}: expected a JSON object")
        tasks.append(_row_to_task(row, path.parent, f"tasks.path {path}:{n}"))
    ids = [t.instance_id for t in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError(f"tasks.path {path}: instance_id values must be unique")
    if not tasks:
        raise ValueError(f"tasks.path {path}: no tasks")
    return tasks[:limit] if limit else tasks


def write_swe_tasks(tasks: list[SweTask], path: str | Path) -> Path:
    """Write ``tasks`` as JSONL (``repo`` made relative to the file's folder when it lies below it)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = []
    for t in tasks:
        row = t.to_json()
        repo = Path(t.repo).resolve()
        if repo.is_relative_to(path.parent.resolve()):
            row["repo"] = repo.relative_to(path.parent.resolve()).as_posix()
        lines.append(json.dumps(row, ensure_ascii=False))
    path.write_text("\n".join(lines) + "\n")
    return path
