"""codekiln.workloads.sandbox."""
