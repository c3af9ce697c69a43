"""The reward client against a real server: scoring, per-test results, reward hacks, retries."""

from __future__ import annotations

import asyncio
import socket

import pytest
from aiohttp import web

from codekiln.workloads.sandbox.client import (
    IOCase,
    RewardClient,
    SandboxTransportError,
    TestSpec,
    extract_code,
)

SQUARE = TestSpec(setup="def check(candidate):\n    assert candidate(2) == 4\n    assert candidate(-3) == 9\n",
                  tests=["check(square)", "assert square(0) == 0", "assert square(5) == 25"], entry_point="square")


def fenced(code: str, tag: str = "python") -> str:
    return f"Here is my solution.\n```{tag}\n{code}\n```\nDone."


def score(server: str, completion: str, spec: TestSpec, language: str = "python"):
    return RewardClient(server).score_batch([(completion, spec)], language)[0]


def test_correct_solution_scores_one(server):
    r = score(server, fenced("def square(x):\n    return x * x"), SQUARE)
    assert (r.pass_fraction, r.passed, r.total, r.verdict) == (1.0, 3, 3, "OK")
    assert [t.passed for t in r.tests] == [True, True, True]


def test_partial_solution_has_per_test_results(server):
    r = score(server, fenced("def square(x):\n    return x * x if x else 1"), SQUARE)
    assert r.passed == 2 and r.total == 3 and r.pass_fraction == pytest.approx(2 / 3)
    assert [t.passed for t in r.tests] == [True, False, True]
    assert "AssertionError" in r.tests[1].error


def test_no_code(server):
    r = score(server, "   ", SQUARE)
    assert r.verdict == "NoCode" and r.pass_fraction == 0.0 and r.total == 3


def test_infinite_loop_in_a_test_keeps_earlier_results(server):
    code = "def square(x):\n    while x == 0:\n        pass\n    return x * x"
    r = score(server, fenced(code), TestSpec(**{**SQUARE.__dict__, "timeout_s": 1.5}))
    assert [t.passed for t in r.tests] == [True, False, False]
    assert r.verdict == "TimeLimitExceeded"
    assert "did not finish" in r.tests[1].error


# ---------------------------------------------------------------- reward hacks score 0
HACKS = {
    "sys_exit_before_asserts": "import sys\nsys.exit(0)\ndef square(x):\n    return 0",
    "exit_builtin": "exit(0)",
    "os_exit_zero": "import os\nos._exit(0)",
    "exit_during_test": "import os\ndef square(x):\n    os._exit(0)",
    "always_equal": "class Eq:\n    def __eq__(self, other):\n        return True\n    __hash__ = None\n"
                    "def square(x):\n    return Eq()",
    "always_equal_subclass_of_int": "class I(int):\n    def __eq__(self, other):\n        return True\n"
                                    "    __hash__ = int.__hash__\ndef square(x):\n    return I(0)",
    "truthy_object": "class T:\n    def __bool__(self):\n        return True\n    def __eq__(self, o):\n"
                     "        return True\n    __hash__ = None\ndef square(x):\n    return T()",
    "patch_builtins": "import builtins\nbuiltins.AssertionError = type('X', (BaseException,), {})\n"
                      "def square(x):\n    return -1",
    # Would score 1.0 if the tests were readable anywhere (stdin, the work dir, /tmp).
    "read_test_file": "import glob, re, sys\nsrc = sys.stdin.read()\n"
                      "for p in glob.glob('/workspace/**', recursive=True) + glob.glob('/tmp/**', recursive=True):\n"
                      "    try:\n        src += open(p, errors='ignore').read()\n    except OSError:\n        pass\n"
                      "pairs = re.findall(r'(?:candidate|square)\\((-?\\d+)\\) == (-?\\d+)', src)\n"
                      "table = {int(a): int(b) for a, b in pairs}\n"
                      "def square(x):\n    return table.get(x, -1)",
    "rewrite_test_file": "import glob\nfor p in glob.glob('/workspace/**', recursive=True):\n    try:\n"
                         "        open(p, 'w').write('')\n    except OSError:\n        pass\n"
                         "def square(x):\n    return -1",
    "print_fake_results": "print('{\"i\": 0, \"passed\": true}')\nprint('PASSED')\ndef square(x):\n    return -1",
    "raise_system_exit_in_eq": "class E:\n    def __eq__(self, o):\n        raise SystemExit(0)\n    __hash__ = None\n"
                               "def square(x):\n    return E()",
}


@pytest.mark.parametrize("name", sorted(HACKS))
def test_reward_hacks_score_zero(server, name):
    r = score(server, fenced(HACKS[name]), SQUARE)
    assert r.passed == 0 and r.pass_fraction == 0.0, (name, r)


def test_strict_mode_can_be_disabled_for_oop_tasks(server):
    code = "class P:\n    def __init__(self, v):\n        self.v = v\n    def __eq__(self, o):\n" \
           "        return isinstance(o, P) and o.v == self.v\n"
    spec = TestSpec(tests=["assert P(1) == P(1)", "assert P(1) != P(2)"], strict=False)
    assert score(server, fenced(code), spec).passed == 2
    assert score(server, fenced(code), TestSpec(tests=spec.tests)).passed == 1  # strict: non-data never equal


def test_plain_data_still_compares_normally_in_strict_mode(server):
    spec = TestSpec(tests=["assert f() == {1, 2}", "assert sorted(f()) == [1, 2]",
                           "assert g() == (1, [2.5, 'x'], None)", "assert abs(h() - 0.3) < 1e-9",
                           "assert f() != {3}", "assert g() is not None"])
    code = "def f():\n    return {1: 'a', 2: 'b'}.keys()\ndef g():\n    return (1, [2.5, 'x'], None)\n" \
           "def h():\n    return 0.1 + 0.2"
    r = score(server, fenced(code), spec)
    assert r.passed == 6, r


def test_test_defined_classes_are_trusted(server):
    spec = TestSpec(setup="class Box:\n    def __init__(self, v):\n        self.v = v\n"
                          "    def __eq__(self, o):\n        return type(o) is Box and o.v == self.v\n",
                    tests=["assert Box(wrap(3)) == Box(3)"])
    assert score(server, fenced("def wrap(x):\n    return x"), spec).passed == 1


# ---------------------------------------------------------------- stdin/stdout tests
IO = TestSpec(io_cases=[IOCase("2 3\n", "5\n"), IOCase("10 -4", "6"), IOCase("0 0\n", "0\n")])


@pytest.mark.parametrize("language, code", [
    ("python", "a, b = map(int, input().split())\nprint(a + b)"),
    ("cpp", "#include <iostream>\nint main(){long a,b;std::cin>>a>>b;std::cout<<a+b<<\"\\n\";}"),
    ("javascript", "const [a,b]=require('fs').readFileSync(0,'utf8').trim().split(/\\s+/).map(Number);"
                   "console.log(a+b)"),
])
def test_io_cases(server, language, code):
    r = score(server, fenced(code, language), IO, language)
    assert r.verdict == "OK" and r.passed == 3, r


def test_io_wrong_answer_and_compile_error(server):
    r = score(server, fenced("a, b = map(int, input().split())\nprint(a - b)"), IO)
    assert [t.passed for t in r.tests] == [False, False, True]
    r = score(server, fenced("int main( {", "c"), IO, "c")
    assert r.verdict == "CompileError" and r.passed == 0


def test_io_sys_exit_before_output_fails(server):
    r = score(server, fenced("import sys\nsys.exit(0)\nprint(5)"), IO)
    assert r.passed == 0


def test_async_score_with_bounded_concurrency(server):
    async def main():
        async with RewardClient(server, max_concurrency=3) as client:
            return await asyncio.gather(*(client.score(fenced(f"def square(x):\n    return x * x + {i % 2}"), SQUARE)
                                          for i in range(12)))

    results = asyncio.run(main())
    assert [r.passed for r in results] == [3, 0] * 6


# ---------------------------------------------------------------- transport
def test_unreachable_server_raises_after_retries():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = RewardClient(f"http://127.0.0.1:{port}", retries=2, backoff_s=0.01)
    with pytest.raises(SandboxTransportError, match="3 attempts"):
        client.score_batch([(fenced("def square(x):\n    return x*x"), SQUARE)])


def test_overload_is_retried_then_succeeds(server):
    """A real HTTP front answering 429 twice, then forwarding to the sandbox."""
    calls = {"n": 0}

    async def main():
        async def handler(request: web.Request) -> web.Response:
            calls["n"] += 1
            if calls["n"] <= 2:
                return web.json_response({"status": "SandboxError", "message": "busy"}, status=429)
            async with __import__("aiohttp").ClientSession() as s, \
                    s.post(server + request.path, data=await request.read()) as upstream:
                return web.Response(body=await upstream.read(), status=upstream.status,
                                    content_type="application/json")

        app = web.Application()
        app.router.add_post("/run_code", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]
        try:
            async with RewardClient(f"http://127.0.0.1:{port}", retries=3, backoff_s=0.01) as client:
                return await client.score(fenced("def square(x):\n    return x*x"), SQUARE)
        finally:
            await runner.cleanup()

    r = asyncio.run(main())
    assert r.verdict == "OK" and calls["n"] == 3


def test_oversized_program_scores_zero_instead_of_raising(server):
    r = score(server, fenced("print(5)\n" + "#" * (5 << 20)), IO)  # the program itself exceeds 4 MiB
    assert r.verdict == "Rejected" and r.pass_fraction == 0.0 and "code:" in r.error


def test_program_failures_are_not_retried(server):
    # A failing program is a result: exactly one request reaches the server.
    before = _runs(server)
    score(server, fenced("raise ValueError('boom')"), SQUARE)
    assert _runs(server) == before + 1


def _runs(server: str) -> float:
    import re
    import urllib.request

    text = urllib.request.urlopen(server + "/metrics").read().decode()
    return sum(float(v) for v in re.findall(r'codekiln_sandbox_runs_total\{language="python",phase="run",[^}]*\} (\S+)',
                                            text))


# ---------------------------------------------------------------- extraction
@pytest.mark.parametrize("completion, language, expected", [
    ("```python\na = 1\n```\ntext\n```python\nb = 2\n```", "python", "b = 2\n"),
    ("```py\nx = 1\n```\n```bash\necho no\n```", "python", "x = 1\n"),
    ("```javascript\nconsole.log(1)\n```\n```python\nprint(1)\n```", "nodejs", "console.log(1)\n"),
    ("```js\nconsole.log(2)\n```", "javascript", "console.log(2)\n"),
    ("```c++\nint main(){}\n```", "cpp", "int main(){}\n"),
    ("```\nuntagged\n```\n```text\nprose\n```", "python", "untagged\n"),
    ("```python\ncut off by max tokens", "python", "cut off by max tokens\n"),
    ("no fences at all", "python", "no fences at all\n"),
    ("~~~python\ntilde = True\n~~~", "python", "tilde = True\n"),
])
def test_extract_code(completion, language, expected):
    assert extract_code(completion, language) == expected


def test_extract_code_can_require_a_fence():
    assert extract_code("print(1)", "python", require_fence=True) is None
