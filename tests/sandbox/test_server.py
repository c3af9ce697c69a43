"""The HTTP API: SandboxFusion wire format, batch, languages, files, limits, 429, metrics."""

from __future__ import annotations

import base64
import concurrent.futures
import re

import httpx
import pytest

from codekiln.workloads.sandbox.local import local_server

from .helpers import b64, make_config, run

HELLO = {
    "python": 'print("hello")\n',
    "bash": "echo hello\n",
    "nodejs": 'console.log("hello")\n',
    "c": '#include <stdio.h>\nint main(){puts("hello");return 0;}\n',
    "cpp": '#include <iostream>\nint main(){std::cout<<"hello"<<std::endl;}\n',
    "java": 'public class Main { public static void main(String[] a) { System.out.println("hello"); } }\n',
    "go": 'package main\nimport "fmt"\nfunc main() { fmt.Println("hello") }\n',
    "rust": 'fn main() { println!("hello"); }\n',
}
REQUIRED = {"python", "bash", "nodejs", "c", "cpp"}


def test_languages_endpoint_reports_toolchains(http):
    langs = http.get("/languages").json()["languages"]
    assert set(langs) >= REQUIRED
    assert "javascript" in langs["nodejs"]["aliases"]
    assert langs["c"]["compiled"] and not langs["python"]["compiled"]


@pytest.mark.parametrize("language", sorted(HELLO))
def test_hello_in_every_offered_language(http, language):
    offered = http.get("/languages").json()["languages"]
    if language not in offered:
        assert language not in REQUIRED, f"{language} must be offered"
        body = run(http, HELLO[language], language, expect_status=400)
        assert "language" in body["message"]
        return
    body = run(http, HELLO[language], language, run_timeout=10)
    assert body["status"] == "Success", body
    assert body["run_result"]["stdout"] == "hello\n"
    assert (body["compile_result"] is not None) == offered[language]["compiled"]


def test_sandboxfusion_response_shape(http):
    body = run(http, "import sys\nprint(sys.stdin.read().upper())\nsys.exit(3)\n", stdin="abc",
               compile_timeout=10, run_timeout=5, memory_limit_MB=-1, unknown_field="ignored")
    assert set(body) >= {"status", "message", "compile_result", "run_result", "executor_pod_name", "files"}
    assert body["status"] == "Failed"
    rr = body["run_result"]
    assert set(rr) >= {"status", "execution_time", "return_code", "stdout", "stderr"}
    assert rr["status"] == "Finished" and rr["return_code"] == 3 and rr["stdout"] == "ABC\n"
    assert rr["verdict"] == "RuntimeError"


def test_javascript_alias_and_stdin(http):
    code = "let s='';process.stdin.on('data',d=>s+=d);process.stdin.on('end',()=>console.log(s.trim()*2));"
    body = run(http, code, "javascript", stdin="21\n")
    assert body["run_result"]["stdout"] == "42\n"


def test_input_and_fetched_files(http):
    code = ("data = open('data/in.txt').read()\nopen('out.txt', 'w').write(data[::-1])\n"
            "open('/tmp/side.txt', 'w').write('side')\nprint(open('/tmp/given.txt').read())\n")
    body = run(http, code, files={"data/in.txt": b64("abc"), "/tmp/given.txt": b64("from tmp")},
               fetch_files=["out.txt", "/tmp/side.txt"])
    assert body["status"] == "Success", body
    assert body["run_result"]["stdout"] == "from tmp\n"
    assert base64.b64decode(body["files"]["out.txt"]) == b"cba"
    assert base64.b64decode(body["files"]["/tmp/side.txt"]) == b"side"


def test_compiled_program_gets_files_and_fetches(http):
    code = ('#include <stdio.h>\nint main(){FILE*f=fopen("in.txt","r");int x;fscanf(f,"%d",&x);'
            'FILE*o=fopen("out.txt","w");fprintf(o,"%d",x*3);fclose(o);return 0;}\n')
    body = run(http, code, "c", files={"in.txt": b64("14")}, fetch_files=["out.txt"])
    assert body["status"] == "Success", body
    assert base64.b64decode(body["files"]["out.txt"]) == b"42"


def test_compile_error(http):
    body = run(http, "int main( { return 0 }", "cpp")
    assert body["status"] == "Failed"
    assert body["compile_result"]["verdict"] == "CompileError"
    assert "error" in body["compile_result"]["stderr"]
    assert body["run_result"] is None


@pytest.mark.parametrize("payload, field, status", [
    ({"code": "print(1)", "language": "cobol"}, "language", 400),
    ({"code": "print(1)", "language": "python", "run_timeout": 1e6}, "run_timeout", 422),
    ({"code": "print(1)", "language": "python", "memory_limit_MB": 10**7}, "memory_limit_MB", 422),
    ({"code": "print(1)", "language": "python", "files": {"a.txt": "not base64!"}}, "files", 422),
    ({"language": "python"}, "code", 422),
])
def test_bad_requests_name_the_field(http, payload, field, status):
    resp = http.post("/run_code", json=payload)
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == "SandboxError"
    assert field in body["message"] and body["field"] == field


def test_batch_compiles_once_and_runs_every_case(http):
    code = "#include <stdio.h>\nint main(){long a,b;scanf(\"%ld %ld\",&a,&b);printf(\"%ld\\n\",a+b);}\n"
    cases = [{"stdin": f"{i} {i}", "expected_stdout": f"{2 * i}\n"} for i in range(20)]
    cases.append({"stdin": "1 1", "expected_stdout": "3"})
    resp = http.post("/run_batch", json={"code": code, "language": "c", "cases": cases})
    assert resp.status_code == 200
    body = resp.json()
    assert body["compile_result"]["verdict"] == "OK"
    assert body["total"] == 21 and body["passed"] == 20
    assert [r["passed"] for r in body["results"]] == [True] * 20 + [False]
    assert body["status"] == "Failed"


def test_batch_case_files_and_stop_on_first_failure(http):
    code = "import sys\nv = int(open('n.txt').read())\nsys.exit(0 if v < 2 else 1)\n"
    cases = [{"files": {"n.txt": b64(str(i))}} for i in range(6)]
    body = http.post("/run_batch", json={"code": code, "language": "python", "cases": cases}).json()
    assert [r["passed"] for r in body["results"]] == [True, True, False, False, False, False]
    body = http.post("/run_batch", json={"code": "import sys\nsys.exit(1)", "language": "python",
                                         "cases": [{}] * 30, "stop_on_first_failure": True}).json()
    assert body["passed"] == 0 and any(r["skipped"] for r in body["results"])


def test_batch_compile_failure_skips_cases(http):
    body = http.post("/run_batch", json={"code": "int main( {", "language": "c", "cases": [{}, {}]}).json()
    assert body["status"] == "Failed" and body["compile_result"]["verdict"] == "CompileError"
    assert all(r["skipped"] and not r["passed"] for r in body["results"])


def test_metrics_count_runs_and_latency(http):
    run(http, "print(1)")
    text = http.get("/metrics").text
    assert re.search(r'codekiln_sandbox_runs_total\{language="python",phase="run",verdict="OK"\} [1-9]', text)
    assert "codekiln_sandbox_request_seconds_bucket" in text
    assert "codekiln_sandbox_queue_depth" in text
    assert "codekiln_sandbox_rejections_total" in text


def test_overload_answers_429_and_recovers(tmp_path):
    config = make_config(str(tmp_path), max_concurrency=1, max_queue=1)
    with local_server(config) as url, httpx.Client(base_url=url, timeout=60) as http:
        slow = {"code": "import time\ntime.sleep(1.5)\nprint('done')", "language": "python"}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            statuses = [f.result().status_code for f in [pool.submit(http.post, "/run_code", json=slow)
                                                         for _ in range(8)]]
        assert statuses.count(200) >= 2 and statuses.count(429) >= 1
        assert set(statuses) <= {200, 429}
        rejected = re.search(r'codekiln_sandbox_rejections_total\{reason="overload"\} (\d+)', http.get("/metrics").text)
        assert rejected and int(float(rejected.group(1))) == statuses.count(429)
        assert run(http, "print(7)")["run_result"]["stdout"] == "7\n"


def test_unusable_work_dir_fails_startup(tmp_path):
    """A work dir the server cannot create makes startup fail loudly (exit 3), never half-start."""
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(RuntimeError, match="exited with 3"), \
            local_server(make_config(str(blocker / "sub")), startup_timeout_s=30):
        pass
