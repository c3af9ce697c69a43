"""codekiln.workloads.model."""
