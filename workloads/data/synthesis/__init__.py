"""Post-training data: instruction synthesis, LLM filters, sandbox-verified answers, DPO pairs."""
