"""Run test ids (``path/test_x.py::test_f`` or ``path::Class::method``) without pytest.

The runner is a small trusted script piped to ``python3 -`` on stdin, so it is not a file of the
workspace the agent could edit; it prints one result line tagged with a random nonce the program
under test cannot know in advance. Plain ``test_*`` functions, methods of plain classes and
``unittest.TestCase`` methods are supported; a module that fails to import fails all its tests.
"""

from __future__ import annotations

import json
import secrets
import shlex
from dataclasses import dataclass, field

_RUNNER = r'''
import contextlib, importlib.util, io, json, os, sys, traceback, unittest

def _run(marker):
    root = os.getcwd()
    sys.path.insert(0, root)
    results, errors, modules = {}, {}, {}
    for tid in sys.argv[1:]:
        path, _, rest = tid.partition("::")
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
                if path not in modules:
                    try:
                        folder = os.path.dirname(os.path.abspath(path))
                        if folder not in sys.path:
                            sys.path.insert(1, folder)
                        spec = importlib.util.spec_from_file_location("_ck_test_%d" % len(modules), path)
                        if spec is None:
                            raise ImportError("no test file %s" % path)
                        mod = importlib.util.module_from_spec(spec)
                        spec.loader.exec_module(mod)
                        modules[path] = mod
                    except BaseException as exc:
                        modules[path] = exc
                mod = modules[path]
                if isinstance(mod, BaseException):
                    raise mod
                parts = rest.split("::")
                if len(parts) == 2:
                    cls = getattr(mod, parts[0])
                    if isinstance(cls, type) and issubclass(cls, unittest.TestCase):
                        res = unittest.TestResult()
                        cls(parts[1]).run(res)
                        bad = res.errors + res.failures
                        if bad:
                            raise AssertionError(bad[0][1])
                        if res.skipped:
                            raise AssertionError("skipped: " + res.skipped[0][1])
                    else:
                        getattr(cls(), parts[1])()
                else:
                    getattr(mod, parts[0])()
            results[tid] = True
        except (Exception, SystemExit) as exc:
            results[tid] = False
            tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
            errors[tid] = ("".join(tb[-3:]) if not isinstance(exc, AssertionError) or not str(exc)
                           else "AssertionError: " + str(exc))[-1500:]
    sys.stdout.write("\n" + marker + json.dumps({"results": results, "errors": errors}) + "\n")
    sys.stdout.flush()

_run(__MARKER__)
'''


@dataclass
class TestReport:
    """Outcome of one test run: per-id pass/fail, error texts, and whether the run finished."""

    __test__ = False

    results: dict[str, bool] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    finished: bool = True
    detail: str = ""

    def passed(self, test_id: str) -> bool:
        return self.results.get(test_id, False)

    def summary(self, max_errors_chars: int = 600) -> str:
        """A short observation: counts, failing ids, the first error texts."""
        ok = [t for t, v in self.results.items() if v]
        bad = [t for t, v in self.results.items() if not v]
        lines = [f"{len(ok)} passed, {len(bad)} failed" + ("" if self.finished else f" ({self.detail})")]
        lines += [f"FAILED {t}" for t in bad]
        budget = max_errors_chars
        for t in bad:
            err = self.errors.get(t, "")
            if err and budget > 0:
                lines.append(f"--- {t}\n{err[:budget]}")
                budget -= len(err)
        return "\n".join(lines)


def runner_command(test_ids: list[str], python: str = "python3") -> tuple[str, str, str]:
    """(command, stdin, marker) that run ``test_ids`` in the current directory."""
    marker = f"@@CODEKILN_TESTS_{secrets.token_hex(8)}@@"
    cmd = " ".join([shlex.quote(python), "-", *(shlex.quote(t) for t in test_ids)])
    return cmd, _RUNNER.replace("__MARKER__", repr(marker)), marker


def parse_report(stdout: str, marker: str, test_ids: list[str], status: str = "Finished") -> TestReport:
    """The runner's result line; tests without a result (timeout, crash) count as failed."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(marker):
            try:
                data = json.loads(line[len(marker):])
                results = {t: bool(data["results"].get(t, False)) for t in test_ids}
                return TestReport(results, dict(data.get("errors", {})))
            except (json.JSONDecodeError, KeyError, TypeError, AttributeError):
                break
    tail = stdout[-300:]
    return TestReport({t: False for t in test_ids}, {}, finished=False,
                      detail=f"test run ended without a report: {status}" + (f"; output tail: {tail}" if tail else ""))
