"""The trusted Python test harness for assert-style tests, and the parser of what it reports.

The harness runs inside the sandbox as the program; the model's solution is the file
``solution.py``; the tests arrive on stdin (never on disk, so the solution cannot read or
rewrite them). Reward hacks it turns into failures:

* ``sys.exit(0)`` / ``os._exit(0)`` / ``raise SystemExit`` in the solution: a test counts as
  passed only on a result line the harness writes after the test ran, tagged with a per-run
  nonce; the solution's own stdout goes to stderr.
* objects whose ``__eq__`` (or ``__bool__``, ``__lt__``…) always succeeds: in strict mode every
  comparison operand and assert value in the test code must be plain data (builtins, a few
  stdlib types, or classes the tests define); anything else compares unequal and is falsy,
  and the entry point's return value must be plain data.
* patching builtins: builtins are restored before the tests run.

Limits: an adversary that introspects the harness's frames from inside the same interpreter
can still find the nonce; rewards treat the harness as a strong filter, not a proof.
"""

from __future__ import annotations

import json

HARNESS = r'''
import ast, builtins, json, os, sys, traceback
_write, _dup, _dup2, _exit, _stdin = os.write, os.dup, os.dup2, os._exit, sys.stdin.buffer
_cfg = json.loads(_stdin.read().decode())
_N = _cfg.pop("nonce").encode()
_OUT = _dup(1)
_dup2(2, 1)
def _emit(rec, _w=_write, _o=_OUT, _n=_N, _d=json.dumps):
    _w(_o, _n + _d(rec).encode() + b"\n")
_SNAP = dict(builtins.__dict__)
_type, _id, _len = type, id, len
import collections, datetime, decimal, fractions
_PLAIN = {int, float, complex, str, bytes, bool, type(None), list, tuple, dict, set, frozenset, bytearray,
          range, slice, type(Ellipsis), decimal.Decimal, fractions.Fraction, collections.OrderedDict,
          collections.defaultdict, collections.Counter, collections.deque, datetime.date, datetime.datetime,
          datetime.time, datetime.timedelta, type(len), type(_emit), type, type(ast)}
_VIEWS = (type({}.keys()), type({}.values()), type({}.items()))
_PLAIN.update(_VIEWS)
_CONTAINERS = (list, tuple, set, frozenset, collections.deque) + _VIEWS
_DICTS = (dict, collections.OrderedDict, collections.defaultdict, collections.Counter)
class _Opaque:
    __slots__ = ("kind",)
    def __init__(self, kind): self.kind = kind
    def __eq__(self, other): return False
    def __ne__(self, other): return True
    def __bool__(self): return False
    def __hash__(self): return 0
    def __repr__(self): return "<non-data value of type %s>" % self.kind
    def _refuse(self, *a): raise TypeError("comparison with a non-data value of type %s" % self.kind)
    __lt__ = __le__ = __gt__ = __ge__ = __contains__ = __iter__ = __len__ = _refuse
def _plain(x, trusted, seen=None, depth=0):
    t = _type(x)
    if t in trusted:
        return True
    if t not in _PLAIN or depth > 50:
        return False
    if t is type:
        return _type(x) is type
    if t in _CONTAINERS or t in _DICTS:
        seen = seen if seen is not None else set()
        if _id(x) in seen:
            return True
        seen.add(_id(x))
        items = list(x.items()) if t in _DICTS else list(x)
        for item in items:
            parts = item if t in _DICTS else (item,)
            for part in parts:
                if not _plain(part, trusted, seen, depth + 1):
                    return False
    return True
class _Strict(ast.NodeTransformer):
    def _wrap(self, node):
        return ast.copy_location(ast.Call(ast.Name("_codekiln_val", ast.Load()), [node], []), node)
    def visit_Compare(self, node):
        self.generic_visit(node)
        node.left = self._wrap(node.left)
        node.comparators = [self._wrap(c) for c in node.comparators]
        return node
    def visit_Assert(self, node):
        self.generic_visit(node)
        node.test = self._wrap(node.test)
        return node
def _code(src, name, strict):
    tree = ast.parse(src, name)
    if strict:
        tree = ast.fix_missing_locations(_Strict().visit(tree))
    return compile(tree, name, "exec")
def _err(exc):
    if isinstance(exc, SystemExit):
        return "SystemExit(%r): the program tried to exit" % (exc.code,)
    lines = traceback.format_exception_only(_type(exc), exc)
    return "".join(lines).strip()[-2000:]
_strict = bool(_cfg.get("strict", True))
_tests = list(_cfg.get("tests", []))
try:
    with open("solution.py", encoding="utf-8") as _fh:
        _src = _fh.read()
    _ns = {"__name__": "solution", "__builtins__": builtins}
    exec(compile(_src, "solution.py", "exec"), _ns)
except BaseException as exc:
    builtins.__dict__.clear(); builtins.__dict__.update(_SNAP)
    _emit({"solution_error": _err(exc)})
    for i in range(_len(_tests)):
        _emit({"i": i, "passed": False, "error": "solution failed: " + _err(exc)})
    _emit({"done": True})
    _exit(0)
builtins.__dict__.clear(); builtins.__dict__.update(_SNAP)
_tns = dict(_ns)
_tns["__name__"] = "tests"
_trusted = set()
def _codekiln_val(x, _t=_trusted):
    if not _strict or _plain(x, _t):
        return x
    return _Opaque(_type(x).__name__)
_tns["_codekiln_val"] = _codekiln_val
_entry = _cfg.get("entry_point")
if _strict and _entry and callable(_tns.get(_entry)):
    _fn = _tns[_entry]
    def _checked(*a, _fn=_fn, **k):
        r = _fn(*a, **k)
        if not _plain(r, _trusted):
            raise TypeError("the solution returned a non-data value of type %s" % _type(r).__name__)
        return r
    _tns[_entry] = _checked
try:
    _before = set(_tns)
    exec(_code(_cfg.get("setup", ""), "tests_setup.py", _strict), _tns)
    for _k in set(_tns) - _before:
        if isinstance(_tns[_k], type):
            _trusted.add(_tns[_k])
except BaseException as exc:
    _emit({"setup_error": _err(exc)})
    for i in range(_len(_tests)):
        _emit({"i": i, "passed": False, "error": "test setup failed: " + _err(exc)})
    _emit({"done": True})
    _exit(0)
for i, _t in enumerate(_tests):
    _emit({"start": i})
    try:
        exec(_code(_t, "test_%d.py" % i, _strict), _tns)
    except BaseException as exc:
        _emit({"i": i, "passed": False, "error": _err(exc)})
    else:
        _emit({"i": i, "passed": True})
    builtins.__dict__.clear(); builtins.__dict__.update(_SNAP)
_emit({"done": True})
_exit(0)
'''


def harness_stdin(nonce: str, setup: str, tests: list[str], entry_point: str | None, strict: bool) -> str:
    """The stdin document the harness reads (tests travel here, never as a file)."""
    return json.dumps({"nonce": nonce, "setup": setup, "tests": tests, "entry_point": entry_point,
                       "strict": strict})


def parse_report(stdout: str, nonce: str, n_tests: int) -> tuple[list[dict], str | None, bool]:
    """Per-test records from the harness's nonce-tagged lines: (records, setup/solution error, done)."""
    records: dict[int, dict] = {}
    started: set[int] = set()
    error, done = None, False
    for line in stdout.splitlines():
        if not line.startswith(nonce):
            continue
        try:
            rec = json.loads(line[len(nonce):])
        except json.JSONDecodeError:
            continue
        if not isinstance(rec, dict):
            continue
        if "start" in rec and isinstance(rec["start"], int):
            started.add(rec["start"])
        elif "i" in rec and isinstance(rec["i"], int) and 0 <= rec["i"] < n_tests and rec["i"] not in records:
            records[rec["i"]] = {"passed": rec.get("passed") is True, "error": rec.get("error")}
        elif "solution_error" in rec or "setup_error" in rec:
            error = str(rec.get("solution_error") or rec.get("setup_error"))
        elif rec.get("done") is True:
            done = True
    out = []
    for i in range(n_tests):
        if i in records:
            out.append(records[i])
        elif i in started:
            out.append({"passed": False, "error": "the test did not finish (timeout or the process died)"})
        else:
            out.append({"passed": False, "error": "the test never ran (the process exited early)"})
    return out, error, done
