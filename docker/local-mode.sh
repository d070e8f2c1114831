#!/bin/sh
# Runs a command with what the SageMaker SDK's local mode needs, on podman and no Docker daemon:
#   docker/local-mode.sh .venv-sdk/bin/python examples/kmeans.py
# - `docker` and `docker-compose` on PATH, as shims in a temporary folder: `docker` is
#   `podman --runtime runc` (the SDK runs `docker info`, `docker images`, `docker pull`), except
#   `docker compose` and `docker context`, which fail, so that the SDK takes `docker-compose` and
#   localhost; `docker-compose` is podman-compose (PODMAN_COMPOSE, default: the one beside the
#   command's Python, else on PATH) driving the same podman, its containers removed when they stop;
# - podman's Docker-compatible API on a socket in that folder, as DOCKER_HOST, for any client that
#   speaks the API instead of the command line;
# - AWS_DEFAULT_REGION (us-east-1) and dummy credentials when none are set (local mode with file://
#   data never calls AWS, but boto3 wants a region), and the SDK's telemetry opt-out (its own config
#   file, SAGEMAKER_USER_CONFIG_OVERRIDE) so that offline calls do not each log a failed request.
# With a Docker daemon and docker compose v2 none of this is needed: run the command directly.
set -eu
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
PODMAN=${PODMAN:-podman --runtime runc}
compose=${PODMAN_COMPOSE:-$(cd "$(dirname "$1")" && pwd)/podman-compose}
[ -x "$compose" ] || compose=$(command -v podman-compose) \
    || { echo "podman-compose not found: make sdk-venv installs it into .venv-sdk" >&2; exit 1; }

shims=$(mktemp -d "${TMPDIR:-/tmp}/local-mode.XXXXXX")
service=
cleanup() {
    [ -z "$service" ] || kill "$service" 2>/dev/null || true
    rm -rf "$shims"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo '#!/bin/sh'
    echo 'case "${1:-}" in compose|context) echo "docker $1: not on podman" >&2; exit 1;; esac'
    echo "exec $PODMAN \"\$@\""
} > "$shims/docker"
# docker-compose: podman-compose, the project named after the SDK's folder, then a wait until that
# project's containers are gone: netavark tears a stopped container's port 8080 down after it stops,
# and would take the port of the SDK's next endpoint, started at once, with it.
cat > "$shims/docker-compose" <<'SHIM'
#!/bin/sh
file=; previous=
for arg in "$@"; do [ "$previous" = -f ] && file=$arg; previous=$arg; done
project=$(basename "$(dirname "${file:-./x}")" | tr 'A-Z' 'a-z')
trap 'stopping=1' TERM  # the SDK ends an endpoint with SIGTERM to this process and its children
"$LOCAL_MODE_COMPOSE" --podman-path "$LOCAL_MODE_SHIMS/docker" --podman-run-args=--rm -p "$project" "$@"
status=$?
for _ in $(seq 120); do
    [ -z "$("$LOCAL_MODE_SHIMS/docker" ps -aq --filter "label=io.podman.compose.project=$project")" ] && break
    sleep 0.25
done
[ -n "${stopping:-}" ] && status=0  # stopped as asked: the SDK would report its own SIGTERM as a failure
exit $status
SHIM
chmod +x "$shims/docker" "$shims/docker-compose"
printf 'SchemaVersion: "1.0"\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n' \
    > "$shims/sagemaker-config.yaml"

$PODMAN system service --time=0 "unix://$shims/podman.sock" &
service=$!

export LOCAL_MODE_SHIMS="$shims" LOCAL_MODE_COMPOSE="$compose"
export PATH="$shims:$PATH" DOCKER_HOST="unix://$shims/podman.sock"
export SAGEMAKER_USER_CONFIG_OVERRIDE="${SAGEMAKER_USER_CONFIG_OVERRIDE:-$shims/sagemaker-config.yaml}"
export AWS_DEFAULT_REGION="${AWS_DEFAULT_REGION:-${AWS_REGION:-us-east-1}}"
if [ -z "${AWS_ACCESS_KEY_ID:-}" ] && [ -z "${AWS_PROFILE:-}" ]; then
    export AWS_ACCESS_KEY_ID=local-mode AWS_SECRET_ACCESS_KEY=local-mode
fi
"$@"
