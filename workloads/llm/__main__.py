"""``python -m codekiln.workloads.llm serve MODEL_DIR`` (what ``codekiln serve`` runs)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "serve":
        print("usage: python -m codekiln.workloads.llm serve MODEL_DIR [--host H] [--port P]", file=sys.stderr)
        return 2
    from codekiln.workloads.llm.server import main as serve_main

    return serve_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
