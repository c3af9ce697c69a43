# Two commands do all the set-up on a fresh machine:
#   make demo   - install, then run the local pipeline on the embedded example resources (no cluster)
#   make demo INIT_FROM=DIR - the same, continuing from a Hugging Face model folder DIR (a PretrainRun export,
#                 Qwen2.5-Coder, Qwen3, ...): pretraining starts from its weights, the data is packed with its
#                 tokenizer.json, and the RLRun from pretraining continues from that (codekiln run --local --init-from DIR)
#   make test   - install, then run the test suite
.PHONY: demo test lint crds

demo:
	./scripts/bootstrap.sh
	.venv/bin/codekiln run --local -f examples/ $(if $(INIT_FROM),--init-from "$(INIT_FROM)")   # DataPipeline → PretrainRun → RLRuns, in spec.after order

test:
	./scripts/bootstrap.sh
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check .

crds:
	.venv/bin/codekiln crds
