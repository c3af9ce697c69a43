"""Code-web extraction on real pages of this machine: trafilatura (ours) vs the builtin HTML parser.

Pages: the Rust book, the Rust std docs (rustdoc) and /usr/share/doc HTML. Per page, measured against the
page's own markup: code recall (non-blank lines of <pre> blocks found as lines in the output) and boilerplate
(text of <nav>, <header>, <footer>, menus/sidebars/help overlays found in the output; lower is better).

    python benchmarks/html_extraction.py [--pages 150]

Last line: one JSON object (name, metric, unit, ours, baseline, baseline_name, ratio, ...).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from lxml import html as lhtml

from codekiln.workloads.data.recall import extract_main, html_to_text

RUST = sorted(Path("/root/.rustup/toolchains").glob("stable-*/share/doc/rust/html"))
BOILER_XPATH = (
    "//nav | //header | //footer | //*[contains(@class,'sidebar')] | //*[contains(@class,'menu')] | "
    "//*[@id='sidebar'] | //*[contains(@class,'help')] | //*[contains(@class,'nav')]"
)


def pages(n: int) -> list[Path]:
    out: list[Path] = []
    if RUST:
        root = RUST[0]
        out += sorted((root / "book").glob("ch*.html"))[: n // 3]
        std = sorted((root / "std").rglob("*.html"))
        out += random.Random(0).sample(std, min(len(std), n // 3))
    docs = sorted(Path("/usr/share/doc").rglob("*.html"))
    out += random.Random(0).sample(docs, min(len(docs), n - len(out)))
    return out


def truth(page: str) -> tuple[list[str], list[str]]:
    """(non-blank lines of <pre> blocks, boilerplate text snippets ≥ 12 chars)."""
    tree = lhtml.fromstring(page)
    code = [ln.strip() for pre in tree.xpath("//pre") for ln in pre.text_content().splitlines() if ln.strip()]
    boiler = []
    for el in tree.xpath(BOILER_XPATH):
        if el.xpath("ancestor-or-self::main | ancestor-or-self::article"):
            continue
        boiler += [t.strip() for t in el.itertext() if len(t.strip()) >= 12]
    return code, sorted(set(boiler))


def score(out: str, code: list[str], boiler: list[str]) -> tuple[float | None, float | None]:
    lines = {ln.strip() for ln in out.splitlines()}
    flat = " ".join(out.split())
    rec = sum(c in lines or c in out for c in code) / len(code) if code else None
    bp = sum(" ".join(b.split()) in flat for b in boiler) / len(boiler) if boiler else None
    return rec, bp


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=150)
    args = ap.parse_args()
    rows = {"trafilatura": [], "builtin": []}
    times = {"trafilatura": 0.0, "builtin": 0.0}
    used = 0
    for p in pages(args.pages):
        try:
            page = p.read_text(encoding="utf-8", errors="replace")
            code, boiler = truth(page)
        except (OSError, ValueError):
            continue
        used += 1
        for name, fn in (("trafilatura", extract_main), ("builtin", html_to_text)):
            t0 = time.perf_counter()
            out = fn(page)
            times[name] += time.perf_counter() - t0
            rows[name].append(score(out, code, boiler))

    def mean(xs):
        xs = [x for x in xs if x is not None]
        return round(sum(xs) / len(xs), 4) if xs else None

    summary = {
        k: {
            "code_line_recall": mean([r[0] for r in v]),
            "boilerplate_kept": mean([r[1] for r in v]),
            "pages_per_s": round(used / times[k], 1),
        }
        for k, v in rows.items()
    }
    ours, base = summary["trafilatura"]["boilerplate_kept"], summary["builtin"]["boilerplate_kept"]
    result = {
        "name": "html_extraction",
        "metric": "boilerplate_text_kept",
        "unit": "fraction of nav/header/footer/sidebar snippets in the output (lower is better)",
        "ours": ours,
        "baseline": base,
        "baseline_name": "builtin HTMLParser extractor (recall.html_to_text)",
        "ratio": round(ours / base, 3) if ours is not None and base else None,
        "code_line_recall": {k: v["code_line_recall"] for k, v in summary.items()},
        "pages_per_s": {k: v["pages_per_s"] for k, v in summary.items()},
        "pages": used,
        "corpus": "Rust book + rustdoc std pages + /usr/share/doc HTML on this machine",
        "machine": "cpu-2core",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
