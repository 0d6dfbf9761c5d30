# moe-imaging: `make demo`, `make test`, `make bench`.
# Everything installs from the project's own files into .venv.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo
WORKERS ?=

.PHONY: demo test bench bench-experts bench-gate bench-tests venv clean

venv: $(STAMP)

# torch is pinned to the CPU build (torch==2.13.0) in pyproject.toml so no
# multi-GB CUDA wheel is pulled on a CPU machine; see README for GPUs.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test,bench,hats]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/moe-imaging simulate survey --size 1024 --seed 1 --out $(DEMO)/exposures
	$(BIN)/moe-imaging simulate survey --size 1024 --seed 2 --out $(DEMO)/exposures
	$(BIN)/moe-imaging simulate survey --size 1024 --seed 3 --out $(DEMO)/exposures
	$(BIN)/moe-imaging run --input '$(DEMO)/exposures/*.fits' --output $(DEMO)/out

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_point.py --size 4096
	$(BIN)/python benchmarks/bench_memory.py --size 16384
	$(BIN)/python benchmarks/bench_microscopy.py
	$(BIN)/python benchmarks/bench_experts.py
	$(BIN)/python benchmarks/bench_learned.py
	$(BIN)/python benchmarks/bench_gate.py
	$(BIN)/python benchmarks/bench_shift.py
	$(BIN)/python benchmarks/bench_fusion.py
	$(BIN)/python benchmarks/bench_nucleus_triage.py
	$(BIN)/python benchmarks/bench_catalogs.py
	$(BIN)/python benchmarks/bench_review.py
	$(BIN)/python benchmarks/bench_flows.py

# issue 3's benchmark: every expert alone, their union and the peers (SEP, photutils,
# scikit-image) on fresh simulated survey and microscopy fields, and the learned expert
bench-experts: $(STAMP)
	$(BIN)/python benchmarks/bench_experts.py
	$(BIN)/python benchmarks/bench_microscopy.py
	$(BIN)/python benchmarks/bench_learned.py

# issue 4's benchmark: the gate's risk-coverage table, calibration and the guarantee
bench-gate: $(STAMP)
	$(BIN)/python benchmarks/bench_gate.py

bench-tests: $(STAMP)
	$(BIN)/python -m pytest -m slow -q tests/benchmarks

clean:
	rm -rf $(DEMO) bench_out .pytest_cache
