#!/usr/bin/env bash
# Build the IronClaw sandbox image (default ironclaw-sandbox:latest).
#
#   sandbox-images/build.sh            build if missing or out of date
#   FORCE=1 sandbox-images/build.sh    rebuild unconditionally (base included)
#
# The image carries the label ironclaw.image-hash=<sha256 of sandbox-images/
# and of the exec agent's sources>; when the existing image has the current
# hash this script is a fast no-op (no cargo, no build).
#
# The exec agent (sandbox-agent/, binary ironclaw-agent) is built here with
# cargo, statically linked, copied to sandbox-images/.agent/ (gitignored) and
# from there into the image at /usr/local/lib/ironclaw/agent.
#
# Base image, in order of preference:
#   1. ironclaw-base:bookworm already present and built from the current
#      package list (label ironclaw.base-hash) -> used as is, no network.
#   2. `docker pull debian:bookworm-slim` succeeds within PULL_TIMEOUT s
#      -> packages.txt is apt-installed in the Dockerfile.
#   3. otherwise bootstrap with
#      mmdebstrap --variant=minbase --include=<packages.txt> bookworm - | docker import
#      (mmdebstrap is apt-installed first if missing and we are root).
# BASE_SOURCE=auto|pull|mmdebstrap forces a choice (default auto).
#
# Environment knobs:
#   SANDBOX_IMAGE   (ironclaw-sandbox:latest)   image to produce
#   BASE_IMAGE      (ironclaw-base:bookworm)    name for the mmdebstrap base
#   PULL_IMAGE      (debian:bookworm-slim)      registry base to try
#   PULL_TIMEOUT    (20)                        seconds for the pull attempt
#   DEBIAN_SUITE    (bookworm)
#   DEBIAN_MIRROR   (http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR (http://deb.debian.org/debian-security, "" = none)
#   DOCKER_BUILDKIT (0)                         legacy builder by default
#   CARGO           (cargo)                     builds the exec agent
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
AGENT_DIR="$ROOT/sandbox-agent"
AGENT_TARGET_DIR="$ROOT/target/sandbox-agent"
# Where the Dockerfile COPYs the agent from. Hidden, so hash_files leaves it
# out: the agent's sources are hashed instead.
AGENT_STAGED="$HERE/.agent/ironclaw-agent"

SANDBOX_IMAGE="${SANDBOX_IMAGE:-ironclaw-sandbox:latest}"
BASE_IMAGE="${BASE_IMAGE:-ironclaw-base:bookworm}"
PULL_IMAGE="${PULL_IMAGE:-debian:bookworm-slim}"
PULL_TIMEOUT="${PULL_TIMEOUT:-20}"
BASE_SOURCE="${BASE_SOURCE:-auto}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR-http://deb.debian.org/debian-security}"
FORCE="${FORCE:-0}"
MERGED_USR_HOOK="${MERGED_USR_HOOK:-/usr/share/mmdebstrap/hooks/merged-usr}"
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"
CARGO="${CARGO:-cargo}"

log() { printf '[sandbox-image] %s\n' "$*" >&2; }
die() { printf '[sandbox-image] ERROR: %s\n' "$*" >&2; exit 1; }

command -v docker >/dev/null || die "docker CLI not found; install Docker (docker.io) first."
[ -f "$AGENT_DIR/Cargo.toml" ] || die "$AGENT_DIR/Cargo.toml is missing: the image needs the exec agent's sources."

# sha256 over every (non-hidden) file in sandbox-images/ and over the agent's
# Cargo.toml, Cargo.lock and src/**: names and contents.
hash_files() {
    {
        (cd "$HERE" && find . -type f ! -name '.*' ! -path '*/.*' -print0 \
            | LC_ALL=C sort -z | xargs -0 sha256sum)
        (cd "$ROOT" && find sandbox-agent/Cargo.toml sandbox-agent/Cargo.lock sandbox-agent/src \
            -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -d' ' -f1
}
label_of() { # image label -> value, empty if image or label is missing
    docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}
packages() { sed -e 's/#.*//' -e 's/[[:space:]]//g' -e '/^$/d' "$HERE/packages.txt"; }

IMAGE_HASH="$(hash_files)"
# The mmdebstrap base depends on the package list, the suite and how this
# script bootstraps (the text between the "base recipe" markers below); the
# rest of this script and the Dockerfile can change without re-bootstrapping.
BASE_HASH="$( { cat "$HERE/packages.txt"; echo "$DEBIAN_SUITE"
                sed -n '/^# >>> base recipe/,/^# <<< base recipe/p' "$HERE/build.sh"; } \
              | sha256sum | cut -d' ' -f1)"

up_to_date() { [ "$FORCE" != 1 ] && [ "$(label_of "$SANDBOX_IMAGE" ironclaw.image-hash)" = "$IMAGE_HASH" ]; }

# Fast path: nothing to do (no lock, no daemon round-trips beyond one inspect).
if up_to_date; then
    log "$SANDBOX_IMAGE is up to date (hash ${IMAGE_HASH:0:12})."
    exit 0
fi

docker info >/dev/null 2>&1 || die "cannot reach the Docker daemon (is it running, and may this user use /var/run/docker.sock?)."

# Serialise concurrent builds (e.g. two `make` invocations).
if command -v flock >/dev/null; then
    exec 9>"${TMPDIR:-/tmp}/ironclaw-sandbox-image.lock"
    flock 9
    if up_to_date; then
        log "$SANDBOX_IMAGE was built concurrently; up to date."
        exit 0
    fi
fi

start=$(date +%s)
log "building $SANDBOX_IMAGE (hash ${IMAGE_HASH:0:12})..."

# The exec agent, linked statically (crt-static) so that it runs whatever the
# image's libc is. --target keeps RUSTFLAGS away from build scripts and proc
# macros; the host's own triple, so no extra toolchain is needed.
build_agent() {
    command -v "$CARGO" >/dev/null \
        || die "cargo not found on PATH; the sandbox image's exec agent (sandbox-agent/) is built with it. Install the Rust toolchain (rustup) first."
    local triple libc_a
    triple="$(rustc -vV 2>/dev/null | sed -n 's/^host: //p' || true)"
    [ -n "$triple" ] || die "cannot tell the host's target triple from 'rustc -vV'."
    case "$triple" in
        *-linux-gnu*)
            # A static glibc link needs libc.a, which only libc6-dev ships.
            command -v "${CC:-cc}" >/dev/null \
                || die "no C linker (${CC:-cc}) to link the exec agent; install one: apt-get install gcc libc6-dev"
            libc_a="$("${CC:-cc}" -print-file-name=libc.a 2>/dev/null || true)"
            [[ "$libc_a" == /* && -f "$libc_a" ]] \
                || die "libc.a not found: the exec agent is linked statically against glibc. Install it: apt-get install libc6-dev"
            ;;
    esac
    log "building the exec agent (ironclaw-agent, $triple, static)..."
    env -u CARGO_ENCODED_RUSTFLAGS RUSTFLAGS="-C target-feature=+crt-static" \
        "$CARGO" build --release --locked \
        --manifest-path "$AGENT_DIR/Cargo.toml" --target "$triple" --target-dir "$AGENT_TARGET_DIR"
    install -D -m 0755 "$AGENT_TARGET_DIR/$triple/release/ironclaw-agent" "$AGENT_STAGED"
}

# The image's agent must start under the production hardening (uid 0, only
# SETUID/SETGID/KILL, read-only rootfs), send READY and exit 0 at stdin EOF.
# A wrongly linked binary fails here rather than in the first session.
smoke_test_agent() {
    local out
    if ! out="$(docker run --rm --network none --user 0:0 --cap-drop ALL \
                  --cap-add SETUID --cap-add SETGID --cap-add KILL \
                  --security-opt no-new-privileges --read-only \
                  "$SANDBOX_IMAGE" /usr/local/lib/ironclaw/agent 2>&1 </dev/null >/dev/null)"; then
        docker image rm --force "$SANDBOX_IMAGE" >/dev/null 2>&1 || true
        die "the exec agent does not start in $SANDBOX_IMAGE (image removed): $out"
    fi
}

build_agent

# >>> base recipe (hashed into ironclaw.base-hash: a change re-bootstraps the base)
ensure_mmdebstrap() {
    command -v mmdebstrap >/dev/null && return 0
    [ "$(id -u)" = 0 ] || die "mmdebstrap is needed to bootstrap the base image; install it (apt-get install mmdebstrap) or run as root."
    command -v apt-get >/dev/null || die "mmdebstrap is missing and apt-get is not available to install it."
    log "installing mmdebstrap with apt-get..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=300 update -qq
    apt-get -o DPkg::Lock::Timeout=300 install -y -qq mmdebstrap >/dev/null
    command -v mmdebstrap >/dev/null || die "mmdebstrap installation failed."
}

bootstrap_base() {
    ensure_mmdebstrap
    local include mirrors=()
    include="$(packages | paste -sd, -)"
    mirrors+=("deb $DEBIAN_MIRROR $DEBIAN_SUITE main")
    case "$DEBIAN_SUITE" in
        sid|unstable|experimental) ;;
        *)
            mirrors+=("deb $DEBIAN_MIRROR $DEBIAN_SUITE-updates main")
            [ -n "$DEBIAN_SECURITY_MIRROR" ] && mirrors+=("deb $DEBIAN_SECURITY_MIRROR $DEBIAN_SUITE-security main")
            ;;
    esac
    # bookworm's init-system-helpers pulls in usrmerge and with it all of
    # perl (~50 MB); the merged-usr hook sets up the /usr symlinks itself and
    # installs usr-is-merged instead.
    local hooks=()
    [ -d "$MERGED_USR_HOOK" ] && hooks+=(--hook-dir="$MERGED_USR_HOOK")
    log "bootstrapping $BASE_IMAGE with mmdebstrap ($DEBIAN_SUITE, minbase + $include)..."
    # Mirrors are given explicitly, so mmdebstrap never reads sources from
    # stdin; </dev/null keeps it from waiting on a terminal in CI anyway.
    mmdebstrap --variant=minbase --format=tar \
        --include="$include" \
        --aptopt='Acquire::Languages "none"' \
        --aptopt='APT::Install-Recommends "false"' \
        --dpkgopt='path-exclude=/usr/share/man/*' \
        --dpkgopt='path-exclude=/usr/share/info/*' \
        --dpkgopt='path-exclude=/usr/share/doc/*' \
        --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/locale/*' \
        --dpkgopt='path-include=/usr/share/locale/locale.alias' \
        --dpkgopt='path-exclude=/usr/share/lintian/*' \
        "${hooks[@]}" \
        --customize-hook='rm -rf "$1"/var/log/* "$1"/var/cache/debconf/*-old "$1"/var/lib/dpkg/*-old' \
        "$DEBIAN_SUITE" - "${mirrors[@]}" </dev/null \
    | docker import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'CMD ["/bin/bash"]' \
        --change "LABEL ironclaw.base-hash=$BASE_HASH" \
        --message "mmdebstrap $DEBIAN_SUITE minbase for ironclaw-sandbox" \
        - "$BASE_IMAGE" >/dev/null
    log "imported $BASE_IMAGE."
}
# <<< base recipe

build_args=()
base=""
case "$BASE_SOURCE" in
    auto|pull|mmdebstrap) ;;
    *) die "BASE_SOURCE must be auto, pull or mmdebstrap (got '$BASE_SOURCE')." ;;
esac

if [ "$BASE_SOURCE" != pull ] && [ "$FORCE" != 1 ] \
   && [ "$(label_of "$BASE_IMAGE" ironclaw.base-hash)" = "$BASE_HASH" ]; then
    log "reusing $BASE_IMAGE (base hash ${BASE_HASH:0:12})."
    base="$BASE_IMAGE"
fi
if [ -z "$base" ] && [ "$BASE_SOURCE" != mmdebstrap ]; then
    log "trying docker pull $PULL_IMAGE (${PULL_TIMEOUT}s)..."
    if timeout "$PULL_TIMEOUT" docker pull -q "$PULL_IMAGE" >/dev/null 2>&1; then
        log "pulled $PULL_IMAGE; packages will be installed with apt in the Dockerfile."
        base="$PULL_IMAGE"
        build_args+=(--build-arg "APT_PACKAGES=$(packages | paste -sd' ' -)")
    elif [ "$BASE_SOURCE" = pull ]; then
        die "docker pull $PULL_IMAGE failed and BASE_SOURCE=pull."
    else
        log "pull failed (no registry); falling back to mmdebstrap."
    fi
fi
if [ -z "$base" ]; then
    bootstrap_base
    base="$BASE_IMAGE"
fi
if [ "$base" = "$BASE_IMAGE" ]; then
    # Everything is already installed: the build needs no network at all.
    build_args+=(--network none)
fi

log "docker build FROM $base..."
docker build --quiet --force-rm \
    --build-arg "BASE_IMAGE=$base" \
    "${build_args[@]}" \
    --label "ironclaw.image-hash=$IMAGE_HASH" \
    --tag "$SANDBOX_IMAGE" \
    "$HERE" >/dev/null
smoke_test_agent

# Drop the previous (now untagged) sandbox images unless a container uses them.
docker image prune --force --filter "label=ironclaw.image-hash" >/dev/null 2>&1 || true

size=$(docker image inspect --format '{{ .Size }}' "$SANDBOX_IMAGE")
log "built $SANDBOX_IMAGE ($((size / 1000000)) MB) in $(( $(date +%s) - start ))s."
