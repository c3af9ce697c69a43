"""codekiln.workloads.data."""
