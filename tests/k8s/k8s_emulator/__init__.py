"""An HTTP Kubernetes API emulator for tests, built on kmock (see ``tests/k8s/README.md``)."""

from .emulator import CRD_RESOURCE, Emulator
from .journal import Journal

__all__ = ["CRD_RESOURCE", "Emulator", "Journal"]
