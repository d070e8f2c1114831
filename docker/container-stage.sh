#!/bin/sh
# The container stage of `make test` (CI runs `make test`): build ONE image and run its container
# tests (tests/container). The image is kmeans, the cheapest; CONTAINER_STAGE_IMAGE picks another.
#   CONTAINER_TESTS=auto (default)  with CI=true, get an engine ready first: podman through
#                                   docker/setup-podman.sh and the base image through
#                                   docker/make-base-image.sh (both need root, apt and a Debian
#                                   mirror); elsewhere, run only when an engine already answers
#   CONTAINER_TESTS=1               as with CI=true        CONTAINER_TESTS=0   skip
# An engine that cannot be made ready (no root, no apt, no network to the Debian mirror or the
# package index, the sandbox refuses containers, a step over its time) skips the stage and says
# why. Once the engine runs containers, a failed build or test fails `make test`.
set -u
MAKE=${MAKE:-make}
PY=${PY:-.venv/bin/python}
IMAGE=${CONTAINER_STAGE_IMAGE:-kmeans}
SETUP_TIMEOUT=${CONTAINER_SETUP_TIMEOUT:-420}   # seconds for each set-up step
BUILD_TIMEOUT=${CONTAINER_BUILD_TIMEOUT:-600}
TEST_TIMEOUT=${CONTAINER_TEST_TIMEOUT:-300}
LOG_DIR=build/container-stage
start=$(date +%s)

say() { echo "container stage: $*"; }
skip() { say "SKIPPED: $*"; exit 0; }
fail() { say "FAILED: $*"; exit 1; }
elapsed() { echo "$(( $(date +%s) - start )) s"; }
# Runs a set-up step with its output in $LOG_DIR/NAME.log; returns its status.
step() {
    name=$1; shift
    say "$name ($*), log in $LOG_DIR/$name.log"
    timeout "$SETUP_TIMEOUT" "$@" > "$LOG_DIR/$name.log" 2>&1
    status=$?
    [ $status -eq 124 ] && say "$name took over $SETUP_TIMEOUT s"
    [ $status -ne 0 ] && tail -n 15 "$LOG_DIR/$name.log" | sed 's/^/    /'
    return $status
}
engine_answers() {
    if command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
        ENGINE=docker ENGINE_CMD=docker
    elif command -v podman >/dev/null 2>&1 && timeout 30 podman --runtime runc info >/dev/null 2>&1; then
        ENGINE=podman ENGINE_CMD="podman --runtime runc"
    else
        return 1
    fi
}

case ${CONTAINER_TESTS:-auto} in
    0) skip "CONTAINER_TESTS=0" ;;
    1) setup=yes ;;
    *) if [ "${CI:-}" = true ]; then setup=yes; else setup=no; fi ;;
esac
mkdir -p "$LOG_DIR"

if ! engine_answers; then
    [ $setup = yes ] || skip "no container engine answers (a docker daemon, or podman: docker/setup-podman.sh);" \
        "CI=true or CONTAINER_TESTS=1 sets podman up"
    [ "$(id -u)" = 0 ] || skip "no container engine, and setting podman up needs root"
    command -v apt-get >/dev/null 2>&1 || skip "no container engine, and no apt-get to install podman with"
    step setup-podman sh docker/setup-podman.sh || skip "podman could not be set up (docker/setup-podman.sh)"
    engine_answers || skip "podman was installed but 'podman --runtime runc info' fails"
fi
say "engine: $ENGINE_CMD ($(elapsed))"
BASE=$("$PY" docker/images.py get "$IMAGE" base) || fail "docker/images.py cannot tell $IMAGE's base image"
# pip in the build installs from the package index: without it the build cannot succeed.
INDEX=${CONTAINER_STAGE_INDEX:-https://pypi.org/simple/pip/}
"$PY" -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=20)" "$INDEX" 2>/dev/null \
    || skip "the package index ($INDEX) does not answer, and the image build installs from it"

if ! $ENGINE_CMD image inspect "$BASE" >/dev/null 2>&1; then
    # No registry is reachable from our machines: make the stand-in from Debian packages there.
    if [ $setup = yes ] && [ "$ENGINE" = podman ] && [ "$BASE" = python:3.11-slim-bookworm ] \
            && [ "$(id -u)" = 0 ] && command -v debootstrap >/dev/null 2>&1; then
        step base-image sh docker/make-base-image.sh || skip "the base image $BASE could not be made"
    else
        step pull-base $ENGINE_CMD pull "$BASE" || skip "the base image $BASE can neither be found nor pulled"
    fi
fi
step run-base $ENGINE_CMD run --rm "$BASE" true || skip "$ENGINE cannot run a container here"
say "engine ready ($(elapsed)); building $IMAGE"

timeout "$BUILD_TIMEOUT" "$MAKE" --no-print-directory "image-$IMAGE" ENGINE="$ENGINE" \
    > "$LOG_DIR/build.log" 2>&1
status=$?
if [ $status -ne 0 ]; then
    tail -n 40 "$LOG_DIR/build.log"
    [ $status -eq 124 ] && fail "building $IMAGE took over $BUILD_TIMEOUT s (log: $LOG_DIR/build.log)"
    fail "building $IMAGE failed (log: $LOG_DIR/build.log)"
fi
say "built $IMAGE ($(elapsed), $($ENGINE_CMD image inspect --format '{{.Size}}' "${IMAGE_PREFIX:-sagemaker-}$IMAGE:latest" \
    2>/dev/null | awk '{printf "%d MB", $1 / 1e6}')); running tests/container"
# The image is built: test-image-<name> finds every layer cached (-q keeps its log short).
timeout "$TEST_TIMEOUT" "$MAKE" --no-print-directory "test-image-$IMAGE" ENGINE="$ENGINE" BUILD_OPTS=-q \
    || fail "tests/container failed for $IMAGE ($(elapsed))"
say "passed ($(elapsed))"
