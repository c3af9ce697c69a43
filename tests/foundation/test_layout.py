"""Packaging and layering: no bare `operator` package, a torch-free control plane, import contracts."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[2]
ALLOWED_FROM_OPERATOR = re.compile(
    r"^codekiln\.workloads(\.\w+)?(\.(config|schema|progress|special_tokens))?$"
)


def test_operator_folder_is_not_a_regular_package() -> None:
    assert not (ROOT / "operator" / "__init__.py").exists(), "operator/__init__.py would shadow the stdlib"


@pytest.mark.parametrize("cwd", [ROOT, Path("/")], ids=["repo-root", "elsewhere"])
def test_stdlib_operator_wins(cwd: Path) -> None:
    code = "import operator, importlib.util as u; print(operator.__file__); print(u.find_spec('operator').origin)"
    out = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=True).stdout
    stdlib = sysconfig.get_paths()["stdlib"]
    assert all(line.startswith(stdlib) for line in out.split()), out


def test_codekiln_subpackages_import() -> None:
    for name in ("codekiln.operator", "codekiln.workloads", "codekiln.kernels"):
        assert importlib.util.find_spec(name) is not None, name


CONTROL_PLANE_SCRIPT = """
import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "triton", "deepspeed", "transformers", "numpy"}:
            raise ImportError(f"blocked heavy import: {name}")
sys.meta_path.insert(0, _Block())
from codekiln.operator.cli import main
code = main(sys.argv[1:])
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"torch", "triton", "deepspeed", "numpy"})
assert not heavy, heavy
sys.exit(code)
"""


def _control_plane(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CONTROL_PLANE_SCRIPT, *args], cwd=cwd, capture_output=True, text=True)


def test_crds_and_validate_run_without_torch(tmp_path: Path) -> None:
    proc = _control_plane("crds", "--root", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "crds").glob("*.yaml"))) == 4
    for example in sorted((ROOT / "examples").glob("*.yaml")):
        proc = _control_plane("validate", "-f", str(example), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: codekiln.dev/v1alpha1\nkind: SandboxPool\nmetadata: {name: p}\nspec: {replicas: -1}\n")
    proc = _control_plane("validate", "-f", str(bad), cwd=tmp_path)
    assert proc.returncode == 2 and "spec.replicas" in proc.stderr, proc.stderr


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(
        "codekiln.operator", "codekiln.workloads", "codekiln.kernels", include_external_packages=True
    )


def _direct_imports(graph: grimp.ImportGraph, importer_prefix: str, imported_prefix: str) -> list[str]:
    return [
        f"{module} -> {imported}"
        for module in graph.modules
        if module.startswith(importer_prefix)
        for imported in graph.find_modules_directly_imported_by(module)
        if imported.startswith(imported_prefix)
    ]


def test_operator_imports_only_torch_free_workload_configs(graph: grimp.ImportGraph) -> None:
    operator_modules = {m for m in graph.modules if m.startswith("codekiln.operator")}
    bad = []
    for module in operator_modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if imported.startswith("codekiln.workloads") and not ALLOWED_FROM_OPERATOR.match(imported):
                bad.append(f"{module} -> {imported}")
            if imported.split(".")[0] in {"torch", "triton", "deepspeed"}:
                bad.append(f"{module} -> {imported}")
    assert not bad, bad


def test_workloads_and_kernels_never_import_operator(graph: grimp.ImportGraph) -> None:
    for package in ("codekiln.workloads", "codekiln.kernels"):
        assert not _direct_imports(graph, package, "codekiln.operator")


def test_kernels_import_nothing_of_codekiln(graph: grimp.ImportGraph) -> None:
    assert not _direct_imports(graph, "codekiln.kernels", "codekiln.workloads")


def test_config_modules_are_torch_free() -> None:
    configs = sorted(p for p in (ROOT / "workloads").rglob("config.py"))
    assert len(configs) >= 5
    names = [".".join(("codekiln", *p.relative_to(ROOT).with_suffix("").parts)) for p in configs]
    code = (
        "import sys, importlib\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('torch', 'numpy', 'triton')]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd="/")
