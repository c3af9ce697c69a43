"""codekiln.workloads.rl."""
