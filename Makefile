# Two commands do all the set-up on a fresh machine:
#   make demo   - install, then run the local pipeline on the embedded example resources (no cluster)
#   make test   - install, then run the test suite
.PHONY: demo test lint crds

demo:
	./scripts/bootstrap.sh
	.venv/bin/codekiln run --local -f examples/   # DataPipeline → PretrainRun → RLRuns, in spec.after order

test:
	./scripts/bootstrap.sh
	.venv/bin/python -m pytest -q

lint:
	.venv/bin/ruff check .

crds:
	.venv/bin/codekiln crds
