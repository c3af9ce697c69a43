"""codekiln.kernels imports nothing of codekiln but itself (it is usable without the platform)."""

import ast
from pathlib import Path

import codekiln.kernels


def test_kernels_import_nothing_else_of_codekiln():
    root = Path(codekiln.kernels.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.startswith("codekiln") and not n.startswith("codekiln.kernels")]
    assert list(root.rglob("*.py")), "no kernel modules found"
    assert not offenders
