"""Make real SWE-style tasks from Python modules on disk: break a function, keep its tests.

For each source module (default: small pure-Python modules of the standard library of the
``python3`` the sandbox runs) the generator

1. copies the module into a fresh repository and derives tests from it: one test per
   docstring that carries doctest examples (``tests/test_<module>.py::test_<function>``),
   or takes the module's own ``test_<module>.py`` when one sits next to it;
2. runs the tests on the original and keeps those that pass (really run, in a subprocess);
3. mutates one expression of the module (comparison, arithmetic or boolean operator, a small
   integer constant, ``True``/``False``), runs the tests again and keeps the mutant only when
   some test now fails: FAIL_TO_PASS = the tests the mutant breaks, PASS_TO_PASS = the rest;
4. writes the mutant repository, a problem statement built from the failing test output, the
   fix as a unified diff and as reference tool calls (``str_replace`` then ``submit``), and
   checks once more that the reference fix makes every test pass.

Every task it writes is therefore solvable (the original passes) and not trivially solved
(the mutant fails).
"""

from __future__ import annotations

import ast
import difflib
import random
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from codekiln.workloads.rl.agent.tasks import SweTask, write_swe_tasks
from codekiln.workloads.rl.agent.testrun import TestReport, parse_report, runner_command

DEFAULT_MODULES = ("statistics", "fractions", "textwrap", "difflib", "colorsys", "heapq", "bisect")
_SWAPS = {
    ast.Lt: ("<", "<="), ast.LtE: ("<=", "<"), ast.Gt: (">", ">="), ast.GtE: (">=", ">"),
    ast.Eq: ("==", "!="), ast.NotEq: ("!=", "=="), ast.Add: ("+", "-"), ast.Sub: ("-", "+"),
    ast.Mult: ("*", "/"), ast.Div: ("/", "*"), ast.FloorDiv: ("//", "/"), ast.Mod: ("%", "//"),
    ast.And: ("and", "or"), ast.Or: ("or", "and"), ast.In: ("in", "not in"), ast.NotIn: ("not in", "in"),
    ast.Is: ("is", "is not"), ast.IsNot: ("is not", "is"),
}


@dataclass(frozen=True)
class Mutation:
    """Replace ``old`` by ``new`` at (line, col) of the source; ``kind`` names the operator."""

    line: int  # 1-based
    col: int
    old: str
    new: str
    kind: str
    function: str

    def apply(self, source: str) -> str:
        lines = source.splitlines(keepends=True)
        text = lines[self.line - 1]
        if text[self.col: self.col + len(self.old)] != self.old:
            raise ValueError(f"mutation does not match line {self.line}")
        lines[self.line - 1] = text[: self.col] + self.new + text[self.col + len(self.old):]
        return "".join(lines)


def _gap_token(lines: list[str], a: ast.AST, b: ast.AST, token: str) -> tuple[int, int] | None:
    """Position of ``token`` alone in the gap between nodes ``a`` and ``b`` (same line only)."""
    if a.end_lineno != b.lineno:
        return None
    text = lines[b.lineno - 1]
    gap = text[a.end_col_offset: b.col_offset]
    if gap.strip(" ()") != token:
        return None
    return b.lineno, a.end_col_offset + gap.index(token)


def _function_spans(tree: ast.Module) -> list[tuple[int, int, str]]:
    spans = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef):
            for sub in node.body:
                if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef):
                    spans.append((sub.lineno, sub.end_lineno, f"{node.name}.{sub.name}"))
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.col_offset == 0:
            spans.append((node.lineno, node.end_lineno, node.name))
    return spans


def find_mutations(source: str) -> list[Mutation]:
    """Candidate one-token mutations inside functions (docstrings untouched)."""
    tree = ast.parse(source)
    lines = source.splitlines()
    spans = _function_spans(tree)

    def owner(line: int) -> str | None:
        best = None
        for lo, hi, name in spans:
            if lo <= line <= hi and (best is None or lo >= best[0]):
                best = (lo, name)
        return best[1] if best else None

    out: list[Mutation] = []

    def add(pos, old, new, kind):
        if pos and (fn := owner(pos[0])):
            out.append(Mutation(pos[0], pos[1], old, new, kind, fn))

    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            left = node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                if type(op) in _SWAPS:
                    old, new = _SWAPS[type(op)]
                    add(_gap_token(lines, left, right, old), old, new, "compare")
                left = right
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAPS:
            old, new = _SWAPS[type(node.op)]
            add(_gap_token(lines, node.left, node.right, old), old, new, "arith")
        elif isinstance(node, ast.BoolOp):
            old, new = _SWAPS[type(node.op)]
            for a, b in zip(node.values, node.values[1:], strict=False):
                add(_gap_token(lines, a, b, old), old, new, "boolean")
        elif isinstance(node, ast.Constant) and node.lineno == node.end_lineno:
            text = lines[node.lineno - 1][node.col_offset: node.end_col_offset]
            if node.value is True and text == "True":
                add((node.lineno, node.col_offset), "True", "False", "constant")
            elif node.value is False and text == "False":
                add((node.lineno, node.col_offset), "False", "True", "constant")
            elif type(node.value) is int and 0 <= node.value <= 2 and text == str(node.value):
                add((node.lineno, node.col_offset), text, str(node.value + 1), "constant")
    return sorted(set(out), key=lambda m: (m.line, m.col))


def doctest_targets(source: str) -> list[str]:
    """Dotted names (``f``, ``C``, ``C.m``) of top-level objects whose docstring has doctest examples."""
    tree = ast.parse(source)
    names = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and not node.name.startswith("_"):
            if ">>>" in (ast.get_docstring(node) or ""):
                names.append(node.name)
            if isinstance(node, ast.ClassDef):
                for sub in node.body:
                    if (isinstance(sub, ast.FunctionDef) and not sub.name.startswith("_")
                            and ">>>" in (ast.get_docstring(sub) or "")):
                        names.append(f"{node.name}.{sub.name}")
    return names


def doctest_test_file(module: str, targets: list[str]) -> str:
    """A test module with one test per doctest-bearing object of ``module``."""
    out = [
        f'"""Tests derived from the docstring examples of {module}.py (one test per documented object)."""',
        "import doctest", "", f"import {module} as _m", "",
        "",
        "def _check(name):",
        "    obj = _m",
        "    for part in name.split('.'):",
        "        obj = getattr(obj, part)",
        "    finder = doctest.DocTestFinder(recurse=False)",
        "    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)",
        "    report = []",
        "    for test in finder.find(obj, name, module=_m, globs=dict(vars(_m))):",
        "        runner.run(test, out=report.append)",
        "    assert runner.failures == 0, ''.join(report)[-800:]",
        "",
    ]
    for name in targets:
        out += ["", f"def test_{name.replace('.', '_')}():", f"    _check({name!r})", ""]
    return "\n".join(out)


def run_tests_local(repo: Path, test_ids: list[str], python: str, timeout_s: float = 60.0) -> TestReport:
    """Run ``test_ids`` in ``repo`` with ``python`` in a subprocess (generation-time checks only:
    the code is the module's own, not model-written, so no sandbox is needed)."""
    cmd, stdin, marker = runner_command(test_ids, python)
    try:
        proc = subprocess.run(["bash", "-c", cmd], input=stdin, capture_output=True, text=True, cwd=repo,
                              timeout=timeout_s, env={"PATH": "/usr/bin:/bin", "PYTHONDONTWRITEBYTECODE": "1"})
        return parse_report(proc.stdout, marker, test_ids)
    except subprocess.TimeoutExpired:
        return parse_report("", marker, test_ids, "TimeLimitExceeded")


def _module_source(module: str, python: str) -> Path:
    out = subprocess.run([python, "-c", f"import {module}; print({module}.__file__)"], capture_output=True,
                         text=True, timeout=30, cwd="/", env={"PATH": "/usr/bin:/bin"})
    path = Path(out.stdout.strip())
    if out.returncode or path.suffix != ".py" or not path.is_file():
        raise ValueError(f"modules: {module} has no pure-Python source for {python} ({out.stderr.strip()[-200:]})")
    return path


def minimal_edit(source: str, mutant: str, m: Mutation) -> tuple[str, str]:
    """The shortest (old_str, new_str) on the mutated line that occurs exactly once in ``mutant``
    and turns it back into ``source``."""
    line = mutant.splitlines()[m.line - 1]
    orig_line = source.splitlines()[m.line - 1]
    lo, hi = m.col, m.col + len(m.new)
    while True:
        while lo > 0 and (line[lo - 1].isalnum() or line[lo - 1] == "_"):
            lo -= 1
        while hi < len(line) and (line[hi].isalnum() or line[hi] == "_"):
            hi += 1
        old = line[lo:hi]
        if mutant.count(old) == 1 or (lo == 0 and hi == len(line)):
            break
        lo, hi = max(0, lo - 1), min(len(line), hi + 1)
    new = orig_line[lo: hi + len(m.old) - len(m.new)]
    if mutant.count(old) != 1:
        raise ValueError("no unique edit")
    return old, new


def _statement(module: str, m: Mutation, failing: list[str], report: TestReport, detail_lines: int = 8) -> str:
    first = failing[0]
    err = report.errors.get(first, "").strip().splitlines()
    detail = "\n".join(err[-detail_lines:])[-400:] if detail_lines else ""
    return (f"`{m.function}` in {module}.py gives wrong results: {len(failing)} test(s) fail "
            f"({', '.join(failing)}).\n{detail}").strip()


def generate_tasks(
    out_dir: str | Path, modules: tuple[str, ...] | list[str] = DEFAULT_MODULES, *, python: str | None = None,
    max_tasks: int = 8, per_module: int = 4, seed: int = 0, max_pass_to_pass: int = 4,
    max_candidates: int = 40, statement_detail_lines: int = 8, jsonl_name: str = "tasks.jsonl", on_task=None,
) -> list[SweTask]:
    """Generate up to ``max_tasks`` verified tasks into ``out_dir`` (``jsonl_name`` + ``repos/``).

    Args:
        out_dir: output folder.
        modules: importable pure-Python module names of ``python``.
        python: the interpreter the tests run with (default: ``python3`` on the system PATH, the
            one the sandbox runs).
        max_tasks: stop after this many tasks.
        per_module: at most this many tasks from one module.
        seed: picks which mutations are tried.
        max_pass_to_pass: keep at most this many PASS_TO_PASS tests per task (shorter test runs).
        max_candidates: mutations tried per module at most.
        statement_detail_lines: lines of the failing test's output quoted in the problem statement.
        on_task: called with each accepted task.
    """
    python = python or shutil.which("python3", path="/usr/bin:/bin") or "python3"
    out = Path(out_dir)
    (out / "repos").mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    tasks: list[SweTask] = []
    for module in modules:
        if len(tasks) >= max_tasks:
            break
        src_path = _module_source(module, python)
        source = src_path.read_text()
        own_tests = src_path.with_name(f"test_{module}.py")
        if own_tests.is_file():
            test_text = own_tests.read_text()
            test_ids = [f"tests/test_{module}.py::{n.name}" for n in ast.parse(test_text).body
                        if isinstance(n, ast.FunctionDef) and n.name.startswith("test")]
        else:
            targets = doctest_targets(source)
            test_text = doctest_test_file(module, targets)
            test_ids = [f"tests/test_{module}.py::test_{t.replace('.', '_')}" for t in targets]
        if not test_ids:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            (work / "tests").mkdir()
            (work / "tests" / f"test_{module}.py").write_text(test_text)
            (work / f"{module}.py").write_text(source)
            base = run_tests_local(work, test_ids, python)
            passing = [t for t in test_ids if base.passed(t)]
            if not passing:
                continue
            candidates = find_mutations(source)
            rng.shuffle(candidates)
            made = 0
            for m in candidates[:max_candidates]:
                if made >= per_module or len(tasks) >= max_tasks:
                    break
                mutant = m.apply(source)
                try:
                    ast.parse(mutant)
                    old, new = minimal_edit(source, mutant, m)
                except (SyntaxError, ValueError):
                    continue
                (work / f"{module}.py").write_text(mutant)
                report = run_tests_local(work, passing, python)
                failing = [t for t in passing if not report.passed(t)]
                if not failing or not report.finished:
                    continue
                # The reference fix must restore every test.
                (work / f"{module}.py").write_text(mutant.replace(old, new, 1))
                fixed = run_tests_local(work, passing, python)
                if not all(fixed.passed(t) for t in passing):
                    continue
                p2p = [t for t in passing if t not in failing][:max_pass_to_pass]
                iid = f"{module}-{m.line}-{m.kind}"
                repo = out / "repos" / iid
                if repo.exists():
                    shutil.rmtree(repo)
                (repo / "tests").mkdir(parents=True)
                (repo / "tests" / f"test_{module}.py").write_text(test_text)
                (repo / f"{module}.py").write_text(mutant)
                patch = "".join(difflib.unified_diff(
                    mutant.splitlines(keepends=True), source.splitlines(keepends=True),
                    f"a/{module}.py", f"b/{module}.py"))
                statement = _statement(module, m, failing, report, statement_detail_lines).replace(f"{work}/", "")
                task = SweTask(
                    instance_id=iid, repo=str(repo), problem_statement=statement,
                    fail_to_pass=failing, pass_to_pass=p2p, patch=patch,
                    reference_calls=[
                        {"name": "str_replace", "arguments": {"path": f"{module}.py", "old_str": old, "new_str": new}},
                        {"name": "submit", "arguments": {}},
                    ],
                )
                tasks.append(task)
                made += 1
                if on_task is not None:
                    on_task(task)
    if not tasks:
        raise ValueError(f"tasks.generate: no task could be made from modules {list(modules)}")
    write_swe_tasks(tasks, out / jsonl_name)
    return tasks
