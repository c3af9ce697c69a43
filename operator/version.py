"""codekiln version and API group constants."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("codekiln")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+unknown"

API_GROUP = "codekiln.dev"
API_VERSION = "v1alpha1"
GROUP_VERSION = f"{API_GROUP}/{API_VERSION}"
