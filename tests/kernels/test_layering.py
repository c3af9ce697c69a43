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


def test_the_torch_path_never_imports_triton():
    """The model's `kernels: torch` path runs the references; Triton loads only on first kernel use."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from codekiln.workloads.model import ops\n"
        "x = torch.randn(3, 4)\n"
        "ops.rms_norm(x, torch.ones(4), 1e-5)\n"
        "ops.linear_cross_entropy(x, torch.randn(7, 4), torch.tensor([0, 1, 6]))\n"
        "assert 'triton' not in sys.modules, 'triton imported by the torch path'\n"
        "import codekiln.kernels as K\n"
        "assert callable(K.rms_norm) and 'triton' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
