"""Pure builders: a validated codekiln resource → the Kubernetes manifests it needs.

Nothing here talks to an API server; every function takes plain data (a pydantic
resource model plus small arguments) and returns manifest dicts.
"""

from codekiln.operator.builders.children import desired_children

__all__ = ["desired_children"]
