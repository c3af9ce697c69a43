"""codekiln version and API group constants."""

from importlib.metadata import PackageNotFoundError, version

from codekiln.workloads import contract

try:
    __version__ = version("codekiln")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

API_GROUP = contract.API_GROUP
API_VERSION = contract.API_VERSION
GROUP_VERSION = contract.GROUP_VERSION
