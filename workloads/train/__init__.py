"""codekiln.workloads.train."""
