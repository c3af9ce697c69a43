"""Evaluation: pass@k (HumanEval, task JSONL) in the sandbox, FIM exact match, Needle-in-the-Code."""
