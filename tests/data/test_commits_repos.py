"""Commit samples from a real git history; repository-level concatenation in dependency order."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.registry import build_step
from codekiln.workloads.data.repo_concat import dependencies, dependency_order
from codekiln.workloads.special_tokens import FILE_SEP, REPO_NAME

from .conftest import REPO_ROOT, STDLIB


@pytest.fixture(scope="module")
def git_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clone of this project's repository (a real history); extended with real stdlib commits if shallow."""
    dest = tmp_path_factory.mktemp("git") / "codekiln"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO_ROOT), str(dest)], check=True)
    run = lambda *a: subprocess.run(["git", "-C", str(dest), *a], check=True, capture_output=True)  # noqa: E731
    if int(run("rev-list", "--count", "HEAD").stdout) < 5:
        run("config", "user.email", "t@example.com")
        run("config", "user.name", "t")
        for i, mod in enumerate(["json", "email/mime", "wsgiref", "urllib", "xml/dom"]):
            shutil.copytree(STDLIB / mod, dest / "vendored_stdlib" / f"step{i}" / mod)
            run("add", "-A")
            run("commit", "-qm", f"Add stdlib {mod} sources")
    return dest


def test_commit_samples_from_real_history(git_repo: Path, tmp_path: Path) -> None:
    ctx = StageContext(tmp_path, "commits")
    reader = build_step("read_git_history", {"repos": [str(git_repo)]}, ctx)
    samples_step = build_step("commit_samples", {"maxDiffLines": 5000}, ctx)
    samples = list(samples_step(reader(iter(()), 0, 1), 0, 1))
    assert reader.stats.docs_out >= 3 and samples
    for s in samples:
        meta = s.metadata
        prompt, target = s.text[: meta["target_offset"]], s.text[meta["target_offset"] :]
        assert prompt.startswith(f"# Commit message\n{meta['message']}")
        assert "# Directory tree\n" in prompt
        assert target.startswith("# Changed paths\n") and "diff --git" in target
        for path in meta["changed_paths"]:
            assert path in target
        assert len(meta["context_files"]) <= 5
        assert all(f"{FILE_SEP}{path}\n" in prompt for path in meta["context_files"])
    assert any(s.metadata["context_files"] for s in samples)  # BM25 found relevant snapshot files
    # the default Seed-Coder repository thresholds (100 commits, 100 active days, ...) hold this young
    # repository back; which one fires first depends on how many commits the clone has by now
    meta_filter = build_step("repo_metadata_filter", {}, ctx)
    assert list(meta_filter(iter(samples), 0, 1)) == []
    assert set(meta_filter.stats.rejects) <= {"commits_below_100", "activity_days_below_100"}
    assert sum(meta_filter.stats.rejects.values()) == len(samples)
    commits_only = build_step("repo_metadata_filter", {"minCommits": 10_000, "minActivityDays": 1}, ctx)
    assert list(commits_only(iter(samples), 0, 1)) == []
    assert set(commits_only.stats.rejects) == {"commits_below_10000"}
    lenient = build_step("repo_metadata_filter", {"minCommits": 1, "minActivityDays": 1}, ctx)
    assert len(list(lenient(iter(samples), 0, 1))) == len(samples)


def test_huge_binary_and_vendored_diffs_filtered(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(repo), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    run("config", "user.email", "t@example.com")
    run("config", "user.name", "t")
    (repo / "README.md").write_text("demo\n")
    shutil.copy(STDLIB / "json" / "decoder.py", repo / "decoder.py")
    run("add", "-A")
    run("commit", "-qm", "init")
    (repo / "blob.bin").write_bytes(bytes(range(256)) * 4)
    run("add", "-A")
    run("commit", "-qm", "binary")
    (repo / "vendor").mkdir()
    shutil.copy(STDLIB / "json" / "encoder.py", repo / "vendor" / "encoder.py")
    run("add", "-A")
    run("commit", "-qm", "vendor")
    shutil.copy(STDLIB / "typing.py", repo / "typing_copy.py")
    run("add", "-A")
    run("commit", "-qm", "huge")
    with open(repo / "decoder.py", "a") as fh:
        fh.write("\n\ndef extra_decode(s):\n    return JSONDecoder().decode(s)\n")
    run("commit", "-qam", "Add extra_decode helper to the decoder")
    ctx = StageContext(tmp_path, "c")
    reader = build_step("read_git_history", {"repos": [str(repo)]}, ctx)
    step = build_step("commit_samples", {"maxDiffLines": 1000}, ctx)
    out = list(step(reader(iter(()), 0, 1), 0, 1))
    assert step.stats.rejects == {"binary_diff": 1, "vendored": 1, "huge_diff": 1}
    assert reader.stats.rejects == {"root_commit": 1}
    assert [d.metadata["message"] for d in out] == ["Add extra_decode helper to the decoder"]
    assert out[0].metadata["context_files"][0] == "decoder.py"  # BM25 retrieves the file the message talks about


def test_python_dependency_order_on_stdlib_package() -> None:
    files = {f"json/{p.name}": p.read_text() for p in sorted((STDLIB / "json").glob("*.py"))}
    deps = dependencies(files, "python")
    assert "json/decoder.py" in deps["json/__init__.py"] and "json/scanner.py" in deps["json/decoder.py"]
    (order,) = [c for c in dependency_order(deps) if "json/__init__.py" in c]
    pos = {p: i for i, p in enumerate(order)}
    for a, ds in deps.items():
        for b in ds:
            assert pos[b] < pos[a], f"{b} must precede {a}"


def test_cycles_tolerated_and_components_split() -> None:
    deps = {"a.py": {"b.py"}, "b.py": {"a.py"}, "c.py": {"a.py"}, "x.py": set(), "y.py": {"x.py"}}
    comps = dependency_order(deps)
    assert sorted(map(sorted, comps)) == [["a.py", "b.py", "c.py"], ["x.py", "y.py"]]
    assert comps[1] == ["x.py", "y.py"] and comps[0][-1] == "c.py"


def test_c_and_java_dependencies() -> None:
    c = {
        "src/util.h": "int f(void);\n",
        "src/util.c": '#include "util.h"\nint f(void){return 1;}\n',
        "src/main.c": '#include <stdio.h>\n#include "util.h"\nint main(void){return f();}\n',
    }
    order = dependency_order(dependencies(c, "c"))
    assert order == [["src/util.h", "src/main.c", "src/util.c"]]
    java = {
        "com/a/Util.java": "package com.a;\nclass Util {}\n",
        "com/a/App.java": "package com.a;\nimport com.a.Util;\nclass App {}\n",
    }
    assert dependency_order(dependencies(java, "java")) == [["com/a/Util.java", "com/a/App.java"]]


def test_repo_concat_step_and_long_context(tmp_path: Path) -> None:
    ctx = StageContext(tmp_path, "r")
    reader = build_step("read_repos", {"paths": [str(STDLIB / "email")], "exclude": ["__pycache__"]}, ctx)
    # email/ as a folder of repositories: its sub-packages (mime) are the repositories
    docs = list(reader(iter(()), 0, 1))
    assert docs and all(d.metadata["repo"] == "mime" for d in docs)
    extra = [Document("mime/NOTES.md", "notes\n" * 5, {"repo": "mime", "path": "NOTES.md", "language": "markdown"})]
    step = build_step("repo_concat", {}, ctx)
    samples = list(step(iter(docs + extra), 0, 1))
    py = [s for s in samples if s.metadata["language"] == "python"]
    assert py and all(s.text.startswith(f"{REPO_NAME}mime\n") for s in samples)
    assert sum(s.text.count(FILE_SEP) for s in py) == len(docs)
    assert {s.metadata["order"] for s in samples} == {"dependency", "random"}
    long_filter = build_step("long_context_filter", {"minTokens": 2000}, ctx)
    kept = list(long_filter(iter(samples), 0, 1))
    assert all(len(s.text) / 3.5 >= 2000 for s in kept) and len(kept) < len(samples)


def test_read_repos_repo_level_and_metadata(tmp_path: Path) -> None:
    meta = tmp_path / "meta.jsonl"
    meta.write_text('{"name": "mime", "stars": 250, "forks": 12}\n')
    ctx = StageContext(tmp_path, "r")
    reader = build_step(
        "read_repos", {"paths": [str(STDLIB / "email")], "level": "repo", "metadataFile": str(meta)}, ctx
    )
    (doc,) = list(reader(iter(()), 0, 1))
    assert doc.id == "mime" and doc.metadata["stars"] == 250 and doc.text.startswith(f"{REPO_NAME}mime\n")
    assert doc.text.count(FILE_SEP) == doc.metadata["files"]
