"""Map the top-level folders onto the ``codekiln`` namespace.

``operator/`` must never be importable as a bare ``operator`` (it would shadow the
standard library), so each folder is installed as ``codekiln.<folder>``.
"""

from setuptools import find_packages, setup

TOP_LEVEL_FOLDERS = ("operator", "workloads", "kernels")

packages: list[str] = []
package_dir: dict[str, str] = {}
for folder in TOP_LEVEL_FOLDERS:
    package_dir[f"codekiln.{folder}"] = folder
    packages.append(f"codekiln.{folder}")
    packages += [f"codekiln.{folder}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
