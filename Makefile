# Set-up is automatic: every target that needs the virtualenv creates it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
REQUIREMENTS := common/requirements.txt $(wildcard algorithms/*/requirements.txt) requirements-dev.txt
PYTEST_ARGS ?=

.PHONY: install sdk-venv demo docs test test-slow test-local-mode fuzz lint bench bench-common bench-kmeans bench-pca bench-knn bench-rcf bench-fm bench-tabular bench-xgboost bench-startup bench-latency bench-transform bench-cold-start bench-libsvm-aot bench-report clean

install: $(VENV)/.installed

$(VENV)/.installed: $(REQUIREMENTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(addprefix -r ,$(REQUIREMENTS))
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# The real SageMaker Python SDK 2.x, apart (300 MB): the recordIO benchmark's anchor and fixture maker,
# and the client of make test-local-mode (podman-compose stands in for docker-compose there).
sdk-venv: .venv-sdk/.installed

.venv-sdk/.installed:
	$(PYTHON) -m venv .venv-sdk
	.venv-sdk/bin/pip install --quiet "sagemaker==2.257.7" scipy numpy requests pytest pytest-timeout scikit-learn podman-compose
	touch $@

demo: install
	$(PY) -m tools.demo

# pytest-xdist: a worker per core, each test file on one worker (its module fixtures train once); numba's
# compiled kernels stay in NUMBA_CACHE_DIR between runs (the first run fills it; the test subprocesses inherit it).
# Then the container stage: one image built and run for real when an engine answers, or when
# CI=true and podman can be set up (docker/container-stage.sh says why it skips; CONTAINER_TESTS=0).
test test-slow: export NUMBA_CACHE_DIR ?= $(HOME)/.cache/sagemaker-builtin-images/numba
test: install
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow and not container" $(PYTEST_ARGS)
	@MAKE="$(MAKE)" PY=$(PY) sh docker/container-stage.sh

# The tests marked slow (@pytest.mark.slow), not part of `test`.
test-slow: install
	$(PY) -m pytest -q -n auto --dist loadfile -m "slow" $(PYTEST_ARGS)

# Slow, not part of `test`: every image (LOCAL_MODE_IMAGES="kmeans xgboost" for some) driven by the real SDK's
# local mode, each through its examples/<image>.py: fit, deploy, predict, batch transform. Builds the images;
# docker/local-mode.sh gives the SDK podman as docker and docker-compose. tests/local_mode says what is checked.
LOCAL_MODE_IMAGES ?= $(IMAGE_NAMES)
test-local-mode: install
	@.venv-sdk/bin/python -c "import podman_compose, pytest_timeout, sklearn" 2>/dev/null || rm -f .venv-sdk/.installed
	$(MAKE) --no-print-directory sdk-venv $(addprefix image-,$(LOCAL_MODE_IMAGES))
	LOCAL_MODE_IMAGES="$(LOCAL_MODE_IMAGES)" IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(TAG) SAGEMAKER_SUPPRESS_V2_WARNING=1 \
		sh docker/local-mode.sh .venv-sdk/bin/python -m pytest -q -p no:cacheprovider -o timeout=900 \
		--durations=0 tests/local_mode $(PYTEST_ARGS)

# Not part of `test`: hypothesis against every reader and encoder, then every image's real server.
# FUZZ_BODIES (per image and content type, default 10000), FUZZ_EXAMPLES, FUZZ_REPORT: see tests/fuzz/conftest.py.
fuzz: install
	$(PY) -m pytest -q tests/fuzz $(PYTEST_ARGS)

lint: install
	$(PY) -m ruff check .

# The generated parts of docs/ (hyperparameter, channel and metric tables) from the code; tests/unit/test_docs.py
# fails when they are stale.
docs: install
	$(PY) -m tools.make_docs

# Every bench prints its figures and writes them to bench/results/<bench>.json. Sizes and repeats:
# make bench-kmeans ROWS=50000,1000000 REPEATS=5 (the rows each bench takes: its --help; BENCH_<OPTION>=...
# sets any other option). QUICK=1 picks the quick sizes that make bench-report uses.
ROWS ?=
REPEATS ?=
QUICK ?=
BENCH := BENCH_ROWS="$(ROWS)" BENCH_REPEATS="$(REPEATS)" BENCH_QUICK="$(QUICK)" $(PY)

bench: bench-common bench-kmeans bench-pca bench-knn bench-rcf bench-fm bench-tabular bench-xgboost bench-startup bench-latency bench-transform

# Every bench at its quick sizes (about 15 minutes on 2 idle cores), then bench/REPORT.md and its plots.
# -k: a bench that fails leaves its previous results (dated in the report) and the others still run.
bench-report: install
	$(MAKE) --no-print-directory -k bench QUICK=1; status=$$?; $(PY) bench/report.py && exit $$status

bench-common: install sdk-venv
	$(BENCH) bench/bench_readers.py
	$(BENCH) bench/bench_recordio.py
	$(BENCH) bench/bench_serving.py

bench-kmeans: install
	$(BENCH) bench/bench_kmeans.py

bench-pca: install
	$(BENCH) bench/bench_pca.py

bench-knn: install
	$(BENCH) bench/bench_knn.py

# Anchors for the RCF bench only (not in any image): AWS's RCF core, rrcf, river's labelled series.
bench-rcf: install
	$(PY) -m pip install --quiet "krcf==0.4.0" "rrcf==0.4.4" "river==0.26.1"
	$(BENCH) bench/bench_rcf.py

# Anchors for the FM bench only: myFM (Bayesian FM) and MovieLens-100k as recbole ships it.
bench-fm: install
	$(PY) -m pip install --quiet myfm
	$(PY) -m pip install --quiet --no-deps "recbole==1.2.1"
	$(BENCH) bench/bench_fm.py

bench-tabular: install
	$(BENCH) bench/bench_tabular.py

bench-xgboost: install
	$(BENCH) bench/bench_xgboost.py

# Every image's fixed cost: a tiny training job's process wall time next to `python -c "import numpy"`, and
# the time to the first /ping and the memory of the serve master and its worker.
# Not part of `bench`: needs a C compiler. What numba.pycc (ahead-of-time) would save a small libsvm job.
bench-libsvm-aot: install
	$(BENCH) bench/bench_libsvm_aot.py

bench-startup: install
	$(BENCH) bench/bench_startup.py

# Every image's latency tail: 1-row requests on one keep-alive connection, p50/p99/max and p99/p50 next to a
# bare Flask app's and to a fixed CPU loop's (the machine's own tail).
bench-latency: install
	$(BENCH) bench/bench_latency.py

# Batch transform at scale: a 1 GB file (QUICK=1: 64 MB) through sm-local's transform against the same model in
# process, for every built-in image (BENCH_ALGORITHMS=xgboost,kmeans for some).
BENCH_ALGORITHMS ?= kmeans,pca,knn,rcf,fm,xgboost,lightgbm,catboost
bench-transform: install
	BENCH_ALGORITHMS="$(BENCH_ALGORITHMS)" $(BENCH) bench/bench_transform.py
# The same in the real images (not part of `bench`: it needs them built, and builds nothing; a missing image is
# named with its make target): `run -d IMAGE serve` to the first /ping 200 next to the engine's own floor, the
# first /invocations against the later ones, the container's memory, and 100 requests under --memory 1g.
bench-cold-start: install
	CONTAINER_ENGINE="$(ENGINE_CMD)" IMAGE_PREFIX=$(IMAGE_PREFIX) IMAGE_TAG=$(TAG) $(BENCH) bench/bench_cold_start.py

clean:
	rm -rf $(VENV) .venv-sdk .pytest_cache

# Image targets (image-<name>, test-image-<name>, push-<name>, ...): driven by images.yaml.
include docker/images.mk
