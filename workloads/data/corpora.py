"""Real code corpora already on this machine, for examples, tests and benchmarks.

site-packages holds the same libraries more than once: installed on their own and vendored
inside pip and setuptools (often at other versions), which makes real near-duplicates.
"""

from __future__ import annotations

import sysconfig
from pathlib import Path

SITE_PACKAGES = Path(sysconfig.get_paths()["purelib"])
# Libraries that pip / setuptools / torch vendor and that are often installed on their own too.
VENDORED_PACKAGES = (
    "packaging", "platformdirs", "tomli", "idna", "requests", "urllib3", "certifi", "msgpack", "distro",
    "resolvelib", "zipp", "more_itertools", "importlib_metadata", "wheel", "rich", "tomli_w", "cachecontrol",
    "pyproject_hooks", "truststore",
)
VENDOR_PARENTS = ("", "pip/_vendor", "setuptools/_vendor", "torch/_vendor")


def vendored_python_files(extra_packages: tuple[str, ...] = (), site: Path = SITE_PACKAGES) -> list[Path]:
    """Sorted ``*.py`` files of every installed and vendored copy of those libraries (plus ``extra_packages``)."""
    roots = [site / parent / name for parent in VENDOR_PARENTS for name in (*VENDORED_PACKAGES, *extra_packages)]
    return sorted({f for root in roots if root.is_dir() for f in root.rglob("*.py")})
