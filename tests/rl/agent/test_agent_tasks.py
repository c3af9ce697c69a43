"""SWE-style tasks: the generator makes real, verified tasks from modules on disk; JSONL round trip."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from codekiln.workloads.rl.agent.generate import Mutation, find_mutations, generate_tasks, minimal_edit, run_tests_local
from codekiln.workloads.rl.agent.tasks import SweTask, archive_bytes, load_swe_tasks, write_swe_tasks

PY = shutil.which("python3", path="/usr/bin:/bin")
pytestmark = pytest.mark.skipif(PY is None, reason="needs a system python3 (the interpreter the sandbox runs)")


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    out = tmp_path_factory.mktemp("swe")
    tasks = generate_tasks(out, ("statistics", "fractions"), python=PY, max_tasks=3, per_module=2, seed=1)
    return out, tasks


def test_generated_tasks_are_solvable_and_broken(generated):
    out, tasks = generated
    assert len(tasks) == 3
    for task in tasks:
        repo = Path(task.repo)
        module = task.reference_calls[0]["arguments"]["path"]
        # really run: the mutant fails every FAIL_TO_PASS test and keeps PASS_TO_PASS
        report = run_tests_local(repo, task.tests, PY)
        assert not any(report.passed(t) for t in task.fail_to_pass)
        assert all(report.passed(t) for t in task.pass_to_pass)
        # the reference call fixes it
        args = task.reference_calls[0]["arguments"]
        fixed = tmp = out / "fixed" / task.instance_id
        shutil.copytree(repo, tmp)
        src = (tmp / module).read_text()
        assert src.count(args["old_str"]) == 1
        (tmp / module).write_text(src.replace(args["old_str"], args["new_str"]))
        assert all(run_tests_local(fixed, task.tests, PY).results.values())
        assert task.patch.startswith(f"--- a/{module}") and task.fail_to_pass[0] in task.problem_statement
        assert str(out) not in task.problem_statement  # no generator temp paths leak into the statement


def test_jsonl_round_trip_folder_and_archive(generated, tmp_path):
    out, tasks = generated
    loaded = load_swe_tasks(out / "tasks.jsonl")
    assert [t.to_json() for t in loaded] == [t.to_json() for t in tasks]
    row = json.loads((out / "tasks.jsonl").read_text().splitlines()[0])
    assert not Path(row["repo"]).is_absolute() and {"FAIL_TO_PASS", "PASS_TO_PASS"} <= set(row)
    # the same task with its repository as a tar.gz archive
    archive = tmp_path / "repo.tar.gz"
    archive.write_bytes(archive_bytes(tasks[0].snapshot()))
    t = SweTask(**{**tasks[0].__dict__, "repo": str(archive)})
    assert t.snapshot() == tasks[0].snapshot()
    write_swe_tasks([t], tmp_path / "t.jsonl")
    assert load_swe_tasks(tmp_path / "t.jsonl")[0].snapshot() == tasks[0].snapshot()


@pytest.mark.parametrize("line, field", [
    ('{"repo": "r", "problem_statement": "p", "FAIL_TO_PASS": ["a::b"]}', "instance_id"),
    ('{"instance_id": "x", "repo": "r", "problem_statement": "p", "FAIL_TO_PASS": []}', "FAIL_TO_PASS"),
    ('{"instance_id": "x", "repo": "r", "problem_statement": "p", "FAIL_TO_PASS": "not json"}', "FAIL_TO_PASS"),
    ('{"instance_id": "x", "repo": "r", "problem_statement": "p", "FAIL_TO_PASS": ["a"], "PASS_TO_PASS": [1]}',
     "PASS_TO_PASS"),
    ('[1]', "expected a JSON object"),
    ('{"instance_id": "x", "repo": "r", "problem_statement": "p", "FAIL_TO_PASS": ["a"], "reference_calls": [1]}',
     "reference_calls"),
])
def test_bad_task_lines_name_the_line_and_field(tmp_path, line, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(ValueError, match=r"bad.jsonl:1") as exc:
        load_swe_tasks(path)
    if field:
        assert field in str(exc.value)


def test_mutations_and_minimal_edits():
    src = "def f(a, b):\n    if a < b and b > 0:\n        return a + b\n    return True\n"
    muts = find_mutations(src)
    assert {m.kind for m in muts} == {"compare", "arith", "boolean", "constant"}
    m = next(m for m in muts if m.old == "+")
    mutant = m.apply(src)
    old, new = minimal_edit(src, mutant, m)
    assert mutant.count(old) == 1 and mutant.replace(old, new) == src
    with pytest.raises(ValueError, match="does not match"):
        Mutation(2, 0, "zz", "yy", "compare", "f").apply(src)


def test_runner_reports_failures_timeouts_and_import_errors(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text(
        "import unittest\n\ndef test_ok():\n    print('noise')\n\n"
        "def test_bad():\n    assert 1 == 2, 'one is not two'\n\n"
        "class T(unittest.TestCase):\n    def test_m(self):\n        self.assertEqual(1, 1)\n")
    (tmp_path / "tests" / "test_b.py").write_text("import no_such_module\n\ndef test_x():\n    pass\n")
    ids = ["tests/test_a.py::test_ok", "tests/test_a.py::test_bad", "tests/test_a.py::T::test_m",
           "tests/test_b.py::test_x", "tests/test_a.py::test_missing"]
    r = run_tests_local(tmp_path, ids, PY)
    assert r.results == {ids[0]: True, ids[1]: False, ids[2]: True, ids[3]: False, ids[4]: False}
    assert "one is not two" in r.errors[ids[1]] and "no_such_module" in r.errors[ids[3]]
    assert r.summary().startswith("2 passed, 3 failed")
    (tmp_path / "tests" / "test_c.py").write_text("import time\n\ndef test_slow():\n    time.sleep(30)\n")
    slow = run_tests_local(tmp_path, ["tests/test_c.py::test_slow"], PY, timeout_s=1)
    assert not slow.finished and slow.results == {"tests/test_c.py::test_slow": False}
