# Container images, one per images.yaml entry (read by docker/images.py). Included by the Makefile.
#   make image-kmeans          build sagemaker-kmeans:$(TAG) (and :latest, and :<version> per emulated version)
#   make images                build every image
#   make test-image-kmeans     build, then run tests/container for that image; test-images: all
#   make push-kmeans           push to ECR: ACCOUNT (default: aws sts), REGION (default: AWS_REGION,
#                              AWS_DEFAULT_REGION, aws configure), TAG; says what is missing first
#   make run-train-kmeans OPT_ML=dir    docker run IMAGE train over a local /opt/ml folder
#   make run-serve-kmeans OPT_ML=dir PORT=8080
# ENGINE is docker when its daemon answers, otherwise podman. With no Docker daemon and no
# registry (like the dev machines): docker/setup-podman.sh, then docker/make-base-image.sh.

IMAGE_PREFIX ?= sagemaker-
TAG ?= $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
REGION ?=
ACCOUNT ?=
OPT_ML ?= $(CURDIR)/build/opt_ml
PORT ?= 8080
BUILD_OPTS ?=
# SageMaker's CPU instances are x86-64: an ARM host (Apple silicon, Graviton) builds under emulation.
PLATFORM ?= linux/amd64
# PIP_CERT (pip's own variable): a CA bundle handed to the build as a secret, never a layer.
PIP_CERT ?=
comma := ,

ifndef ENGINE
# Decided on first use only, so targets that need no engine never ask the docker daemon.
ENGINE = $(eval ENGINE := $(shell docker info >/dev/null 2>&1 && echo docker || echo podman))$(ENGINE)
endif
# podman on these machines runs with runc; Docker needs nothing extra.
ENGINE_CMD = $(ENGINE)$(if $(filter podman,$(ENGINE)), --runtime runc)
IMAGE_BUILD_FLAGS = --platform $(PLATFORM) $(if $(filter podman,$(ENGINE)),--ignorefile docker/Dockerfile.dockerignore) \
	$(if $(PIP_CERT),--secret id=pip_cert$(comma)src=$(PIP_CERT)) $(BUILD_OPTS)
IMAGE_NAMES = $(shell $(PY) docker/images.py names)

# The container tests read the same settings (tests/container/test_images.py).
container_tests = CONTAINER_ENGINE="$(ENGINE_CMD)" CONTAINER_IMAGES="$(1)" IMAGE_PREFIX=$(IMAGE_PREFIX) \
	IMAGE_TAG=$(TAG) $(PY) -m pytest -q -m container tests/container $(PYTEST_ARGS)

.PHONY: images test-images

# Then one tag per emulated version (images.yaml versions): the same image with SAGEMAKER_EMULATED_VERSION
# set, committed from a container that never runs (a build cache keyed on the Dockerfile's text reused one
# version's ENV layer for the next).
image-%: install
	@args=$$($(PY) docker/images.py build-args $*) && set -x && \
	$(ENGINE_CMD) build -f docker/Dockerfile $(IMAGE_BUILD_FLAGS) $$args \
		-t $(IMAGE_PREFIX)$*:$(TAG) -t $(IMAGE_PREFIX)$*:latest . && \
	for version in $$($(PY) docker/images.py versions $*); do \
		container=$$($(ENGINE_CMD) create $(IMAGE_PREFIX)$*:$(TAG)) && \
		$(ENGINE_CMD) commit --change "ENV SAGEMAKER_EMULATED_VERSION=$$version" $$container \
			$(IMAGE_PREFIX)$*:$$version >/dev/null && $(ENGINE_CMD) rm $$container >/dev/null || exit 1; \
	done

images: install
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) $(addprefix image-,$(IMAGE_NAMES))

test-image-%: image-%
	$(call container_tests,$*)

test-images: images
	$(call container_tests,$(IMAGE_NAMES))

# What is missing (aws CLI, credentials, account, region) is said before anything is built.
push-%: install
	@set -e; target=$$(ACCOUNT="$(ACCOUNT)" REGION="$(REGION)" $(PY) docker/images.py push-target $*); \
	registry=$${target% *}; region=$${target#* }; repo=$(IMAGE_PREFIX)$*; \
	$(MAKE) --no-print-directory -f $(firstword $(MAKEFILE_LIST)) image-$*; \
	password=$$(aws ecr get-login-password --region $$region); \
	printf '%s' "$$password" | $(ENGINE_CMD) login --username AWS --password-stdin $$registry; \
	aws ecr describe-repositories --region $$region --repository-names $$repo >/dev/null 2>&1 \
		|| aws ecr create-repository --region $$region --repository-name $$repo >/dev/null; \
	$(ENGINE_CMD) tag $$repo:$(TAG) $$registry/$$repo:$(TAG); \
	$(ENGINE_CMD) push $$registry/$$repo:$(TAG); \
	echo "image_uri: $$registry/$$repo:$(TAG)"

run-train-%: image-%
	$(ENGINE_CMD) run --rm -v $(abspath $(OPT_ML)):/opt/ml $(IMAGE_PREFIX)$*:$(TAG) train

run-serve-%: image-%
	$(ENGINE_CMD) run --rm -p $(PORT):8080 -v $(abspath $(OPT_ML)):/opt/ml $(IMAGE_PREFIX)$*:$(TAG) serve
