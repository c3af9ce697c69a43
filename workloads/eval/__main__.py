"""``python -m codekiln.workloads.eval ...`` (what ``codekiln eval`` runs)."""

from __future__ import annotations

import sys

from codekiln.workloads.eval.cli import main

if __name__ == "__main__":
    sys.exit(main())
