# bake: the two set-up commands are `make bake` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= ha-stacked
OUT ?= outputs
STAMP := $(VENV)/.installed

.PHONY: bake test test-fast lint vm-image vm-test k8s k8s-amd64 e2e bench fuzz golden mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

## bake: create the venv, install, bake PROFILE (default ha-stacked) into OUT/; its secrets bundle is kept apart in secrets/<cluster>/
bake: $(STAMP)
	$(BIN)/bake --profile $(PROFILE) --out $(OUT)

## test: lint, type-check, build the amd64 upstream components and run every tier, with the single-node real-kubeadm boot (the other boots: make e2e)
test: $(STAMP) lint k8s-amd64
	$(BIN)/pytest -q -m "not e2e or ci"

## test-fast: everything but the VM boots
test-fast: $(STAMP)
	$(BIN)/pytest -q -m "not vm"

lint: $(STAMP)
	$(BIN)/ruff check builder tests
	$(BIN)/ruff format --check builder tests
	$(BIN)/mypy

## golden: after an intended rendering change, rewrite the golden tree (tests/fixtures/golden/<profile>/, baked from each profile's fixture bundle) and print what changed, then check the per-module renderers agree with it
golden: $(STAMP)
	UPDATE_GOLDEN=1 $(BIN)/pytest -q tests/test_goldens.py
	$(BIN)/pytest -q tests/test_kubeadm_config.py tests/test_static_pods.py tests/test_cloudinit.py -k test_golden

## vm-image: build (or reuse) the cached Debian guest images for the VM tests
vm-image: $(STAMP)
	$(BIN)/python -m tests.vm image --arch amd64

## vm-test: boot every seed ISO of a baked PROFILE on a private QEMU network
vm-test: $(STAMP)
	$(BIN)/bake --profile $(PROFILE) --out $(OUT) --set cluster.packages.mode=prebaked --quiet
	$(BIN)/python -m tests.vm run --profile-dir $(OUT)/$$($(BIN)/python -c "import sys; from builder.validation.profile import load_profile; print(load_profile(sys.argv[1]).cluster.name)" $(PROFILE))

## k8s: build (or reuse) upstream Kubernetes components and their image archives: amd64, then arm64
k8s: k8s-amd64
	$(BIN)/python -m tests.k8s.build --arch arm64

## k8s-amd64: what the real-kubeadm tier of `make test` needs (with the etcd release of every supported minor)
k8s-amd64: $(STAMP)
	$(BIN)/python -m tests.k8s.build --arch amd64
	$(BIN)/python -m tests.etcd_releases

## e2e: the real kubeadm forms PROFILE's cluster in QEMU guests (single-node, single-master, served-single-node, external-etcd-late, interrupted-kubeadm, ha-stacked; amd64 guests)
e2e: k8s-amd64
	BAKE_E2E_PROFILE=$(PROFILE) $(BIN)/pytest -q -s -rA -m e2e tests/vm/test_e2e.py -k "test_$(subst -,_,$(PROFILE))"

## bench: speed, memory and seed-size figures against the performance targets (printed, not asserted; BENCH_ARGS="--big 9997" adds 10,000 nodes)
BENCH_ARGS ?=
bench: $(STAMP)
	$(BIN)/python -m tests.bench $(BENCH_ARGS)

## fuzz: long hypothesis run over the profile loader and the whole bake (10,000 examples a test, on two cores: the free-text test beside all others)
FUZZ_EXAMPLES ?= 10000
fuzz: $(STAMP)
	BAKE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py -k free_text & free=$$!; \
	BAKE_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -p no:cacheprovider tests/test_fuzz.py -k "not free_text"; rest=$$?; \
	wait $$free && exit $$rest

## mutate: mutation testing of the security / correctness modules (MUTATE='builder.check.*' narrows it)
MUTATE ?=
MUTATE_CHILDREN ?= 1
mutate: $(STAMP)
	rm -rf mutants
	$(BIN)/mutmut run --max-children $(MUTATE_CHILDREN) $(MUTATE)
	$(BIN)/mutmut results

clean:
	rm -rf $(VENV) .cache build dist *.egg-info mutants
