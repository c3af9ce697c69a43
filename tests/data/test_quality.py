"""Quality scorers: fastText (train + predict), an LLM scorer against a real HTTP server, iterative recall."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from codekiln.workloads.data.base import StageContext
from codekiln.workloads.data.document import Document
from codekiln.workloads.data.quality import FastTextTrainParams, positive_scores, save_model, train_fasttext
from codekiln.workloads.data.recall import html_to_text, iterative_recall
from codekiln.workloads.data.registry import build_step

from .conftest import STDLIB


def _library_and_tests() -> tuple[list[str], list[str]]:
    lib = [p.read_text(encoding="utf-8") for p in sorted(STDLIB.glob("*.py"))[:120]]
    tests = [p.read_text(encoding="utf-8", errors="replace") for p in sorted((STDLIB / "test").glob("test_*.py"))[:120]]
    return lib, tests


def test_fasttext_scorer_train_predict_and_step(tmp_path: Path) -> None:
    lib, tests = _library_and_tests()
    params = FastTextTrainParams(min_count=1, epoch=40, dim=32, word_ngrams=1, lr=0.1)
    model = train_fasttext(lib[::2], tests[::2], params)
    pos, neg = positive_scores(model, lib[1::2]), positive_scores(model, tests[1::2])
    accuracy = ((pos >= 0.5).sum() + (neg < 0.5).sum()) / (pos.size + neg.size)
    assert accuracy >= 0.8, accuracy
    save_model(model, tmp_path / "quality" / "ft.bin")
    docs = [Document(f"lib{i}", t) for i, t in enumerate(lib[1::2])] + [
        Document(f"t{i}", t) for i, t in enumerate(tests[1::2])
    ]
    ctx = StageContext(tmp_path, "q")
    step = build_step("fasttext_quality", {"model": "quality/ft.bin", "dropBottomFraction": 0.5}, ctx)
    kept = list(step(iter(docs), 0, 1))
    assert len(kept) == len(docs) // 2 and sum(d.id.startswith("lib") for d in kept) >= 0.8 * len(kept)
    assert step.stats.rejects["low_quality_fasttext"] == len(docs) - len(kept)
    threshold = build_step("fasttext_quality", {"model": "quality/ft.bin", "threshold": 0.5}, ctx)
    assert all(d.metadata["quality_fasttext"] >= 0.5 for d in threshold(iter(docs), 0, 1))


class _Rater(BaseHTTPRequestHandler):
    """An OpenAI-compatible /v1/chat/completions that rates code by measurable properties."""

    requests: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append(body)
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        code = body["messages"][-1]["content"].split("```", 1)[1]
        if "RAISE_500" in code:
            self.send_error(500, "boom")
            return
        lines = [x for x in code.splitlines() if x.strip()]
        comments = sum(x.strip().startswith("#") for x in lines) / max(len(lines), 1)
        defs = len(re.findall(r"^\s*(def|class) ", code, re.M))
        scores = {
            "readability": min(10, 3 + 40 * comments),
            "modularity": min(10, defs),
            "clarity": 7,
            "reusability": min(10, defs / 2),
        }
        content = "garbage without json" if "NO_JSON" in code else f"Here is my rating:\n{json.dumps(scores)}"
        out = json.dumps(
            {
                "id": "x",
                "object": "chat.completion",
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}],
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def rater_url():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Rater)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Rater.requests = []
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_llm_scorer_against_real_http_server(rater_url: str, tmp_path: Path) -> None:
    files = sorted(STDLIB.glob("*.py"))[:30]
    docs = [Document(p.name, p.read_text(encoding="utf-8"), {"language": "python"}) for p in files]
    docs += [Document("bad-status", "x = 1  # RAISE_500\n"), Document("bad-json", "y = 2  # NO_JSON\n")]
    ctx = StageContext(tmp_path, "q")
    step = build_step(
        "llm_quality", {"endpoint": rater_url, "model": "rater-1", "threshold": 0.5, "concurrency": 4}, ctx
    )
    ctx.rejects = None
    kept = list(step(iter(docs), 0, 1))
    assert len(_Rater.requests) == len(docs) and {r["model"] for r in _Rater.requests} == {"rater-1"}
    assert all("readability" in r["messages"][0]["content"] for r in _Rater.requests)
    assert step.stats.rejects["llm_error"] == 2
    assert kept and all(0.5 <= d.metadata["quality_llm"] <= 1 for d in kept)
    assert step.stats.rejects["low_quality_llm"] == len(docs) - 2 - len(kept)
    bottom = build_step("llm_quality", {"endpoint": rater_url, "model": "m", "dropBottomFraction": 0.25}, ctx)
    assert len(list(bottom(iter(docs[:20]), 0, 1))) == 15


def test_llm_keep_rule_needs_exactly_one(tmp_path: Path) -> None:
    from codekiln.workloads.data.registry import StepConfigError

    with pytest.raises(StepConfigError, match="exactly one of threshold or dropBottomFraction"):
        build_step("llm_quality", {"endpoint": "http://x/v1", "model": "m"}, StageContext(tmp_path, "q"))


def _html_pages() -> list[tuple[str, bool]]:
    roots = [Path("/usr/share/doc"), Path("/usr/lib/node_modules/npm/docs"), Path("/usr/share/gtk-doc")]
    pages = sorted(p for r in roots if r.exists() for p in r.rglob("*.htm*") if p.is_file())
    pre = re.compile(r"<pre[^>]*>(.*?)</pre>", re.S | re.I)
    out = []
    for p in pages:
        html = p.read_text(encoding="utf-8", errors="replace")
        out.append((html, any(m.count("\n") >= 3 for m in pre.findall(html))))
    return out


def test_html_extraction_keeps_code_blocks() -> None:
    html = (
        "<html><head><style>p{}</style><script>var x=1;</script></head><body><h1>Title</h1>"
        "<p>Use <code>f()</code> like this:</p><pre>def f():\n    return 1\n</pre><nav>menu</nav></body></html>"
    )
    text = html_to_text(html)
    assert "```\ndef f():\n    return 1\n" in text and "`f()`" in text
    assert "var x" not in text and "menu" not in text and "p{}" not in text


def test_iterative_recall_reports_every_round() -> None:
    pages = _html_pages()
    assert len(pages) >= 150, "HTML documentation pages on disk (/usr/share/doc, npm docs)"
    rng = random.Random(0)
    rng.shuffle(pages)
    texts = [html_to_text(h) for h, _ in pages]
    labels = [y for _, y in pages]
    n = len(pages)
    held = range(0, n // 4)
    seeds = range(n // 4, n // 4 + n // 6)
    pool = [texts[i] for i in range(n // 4 + n // 6, n)]
    pos = [texts[i] for i in seeds if labels[i]][:15]
    neg = [texts[i] for i in seeds if not labels[i]]
    reports, recalled = iterative_recall(
        pos,
        neg,
        pool,
        [texts[i] for i in held],
        [labels[i] for i in held],
        rounds=3,
        top_fraction=0.15,
        min_added_fraction=0.02,
        train=FastTextTrainParams(min_count=1, epoch=20, dim=32, word_ngrams=2),
    )
    for r in reports:
        print(
            f"round {r.round}: +{r.added} positives ({r.positives}), held-out recall {r.recall:.2f} "
            f"precision {r.precision:.2f}"
        )
    assert 1 <= len(reports) <= 3 and reports[0].positives == len(pos) + reports[0].added
    base_rate = float(np.mean([labels[i] for i in held]))
    assert reports[-1].recall >= 0.8 and reports[-1].recall >= reports[0].recall
    assert reports[-1].precision > base_rate  # better than keeping everything
    pool_labels = np.array(labels[n // 4 + n // 6 :])
    assert pool_labels[recalled].mean() > pool_labels.mean()  # the loop recalls code pages preferentially


POLLUTED_HEAP_SCRIPT = """
import ctypes, sys, sysconfig
from pathlib import Path
from codekiln.workloads.data import quality

libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes, libc.free.argtypes = ctypes.c_void_p, [ctypes.c_size_t], [ctypes.c_void_p]
blocks = [libc.malloc(n) for n in [64, 256, 1024, 4096, 16384, 65536] * 2000]
for block, n in zip(blocks, [64, 256, 1024, 4096, 16384, 65536] * 2000):
    ctypes.memset(block, 0xFF, n)  # freed heap full of NaN bit patterns, as after a long test session
for block in blocks:
    libc.free(block)
std = Path(sysconfig.get_paths()["stdlib"])
lib = [p.read_text(encoding="utf-8") for p in sorted(std.glob("*.py"))[:60]]
tests = [p.read_text(encoding="utf-8", errors="replace") for p in sorted((std / "test").glob("test_*.py"))[:60]]
params = quality.FastTextTrainParams(min_count=1, epoch=40, dim=32, word_ngrams=1, lr=0.1)
if sys.argv[1] == "in-process":
    import fasttext, tempfile
    with tempfile.NamedTemporaryFile("w", suffix=".txt") as fh:
        fh.write("\\n".join([f"__label__pos {quality.one_line(t, 20000)}" for t in lib]
                           + [f"__label__neg {quality.one_line(t, 20000)}" for t in tests]) + "\\n")
        fh.flush()
        fasttext.train_supervised(input=fh.name, dim=32, lr=0.1, minCount=1, epoch=40, verbose=0, seed=0, thread=1)
else:
    model = quality.train_fasttext(lib, tests, params)
    assert quality.positive_scores(model, lib[:5]).mean() > 0.5
print("trained")
"""


def test_fasttext_trains_even_when_the_callers_heap_is_dirty() -> None:
    # the reason training runs in a spawned process: in-process it reads the dirty heap and hits NaN
    def run(mode: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", POLLUTED_HEAP_SCRIPT, mode], capture_output=True, text=True,
                              timeout=300)

    in_process = run("in-process")
    assert in_process.returncode != 0 and "Encountered NaN" in in_process.stderr
    spawned = run("spawned")
    assert spawned.returncode == 0 and spawned.stdout.strip() == "trained", spawned.stderr
