#!/usr/bin/env bash
# Make this machine able to build and run the project's images: a real container engine, a Docker
# API for the unchanged `docker` CLI and docker-py (kfp.local.DockerRunner), and a Python base image.
# Idempotent: each step checks first, so a second run only prints what is already in place.
#
#   BASE_IMAGE=localhost/textclf-base:bookworm bash images/container_engine.sh   # as root, on Debian bookworm
#   (make container-test runs it so)
#
# Where a Docker engine already answers `docker info`, it is used as it is and this script only
# checks it. Otherwise podman is installed from Debian's packages and serves the Docker API on
# /var/run/docker.sock. No registry is reached: the base image is made with debootstrap and tagged
# as BASE_IMAGE, which the build passes to the Dockerfiles as PYTHON_IMAGE.
set -euo pipefail

BASE_IMAGE=${BASE_IMAGE:?set BASE_IMAGE, the name to give the debootstrapped Python base (make container-test does)}
DOCKER_SOCKET=/var/run/docker.sock
CONTAINERS_CONF=/etc/containers/containers.conf
say() { printf 'container-engine: %s\n' "$*"; }

docker_answers() { command -v docker >/dev/null && timeout 20 docker info >/dev/null 2>&1; }

install_podman() {
  if command -v podman >/dev/null && command -v debootstrap >/dev/null; then
    say "podman $(podman --version | awk '{print $3}') already installed"
    return
  fi
  say "installing podman and debootstrap from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq podman buildah runc iptables debootstrap uidmap fuse-overlayfs \
    slirp4netns netavark aardvark-dns catatonit >/dev/null
}

configure_podman() {
  # crun fails on hybrid cgroup v1 hosts, and the default rlimits exceed what such a sandbox
  # allows: runc, cgroupfs, and nofile capped at the hard limit of this shell.
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=1048576
  local wanted
  wanted=$(cat <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=32768:32768"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
  if [ -f "$CONTAINERS_CONF" ] && [ "$(cat "$CONTAINERS_CONF")" = "$wanted" ]; then
    say "$CONTAINERS_CONF already configured"
    return
  fi
  mkdir -p "$(dirname "$CONTAINERS_CONF")"
  printf '%s\n' "$wanted" > "$CONTAINERS_CONF"
  say "wrote $CONTAINERS_CONF (runc, cgroupfs, nofile=${nofile})"
}

serve_docker_api() {
  if docker_answers; then
    say "Docker API answers on $DOCKER_SOCKET"
    return
  fi
  say "starting podman system service on $DOCKER_SOCKET"
  rm -f "$DOCKER_SOCKET"
  # From /, not from the checkout: the service outlives this script, and once its working folder
  # is deleted (a removed clone) every container start fails with "write child: broken pipe".
  (cd / && exec nohup podman system service --time=0 "unix://$DOCKER_SOCKET" >/var/log/podman-service.log 2>&1) &
  for _ in $(seq 1 50); do
    docker_answers && { say "Docker API answers on $DOCKER_SOCKET"; return; }
    sleep 0.2
  done
  say "podman system service did not answer; see /var/log/podman-service.log" >&2
  exit 1
}

make_base_image() {
  if podman image exists "$BASE_IMAGE" 2>/dev/null; then
    say "base image $BASE_IMAGE already present"
    return
  fi
  local root
  root=$(mktemp -d /var/tmp/textclf-base.XXXXXX)
  say "debootstrapping Debian bookworm with Python 3.11 into $root (about a minute)"
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$root" http://deb.debian.org/debian >/var/log/textclf-debootstrap.log 2>&1 \
    || { say "debootstrap failed; see /var/log/textclf-debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  # This machine reaches PyPI through a TLS proxy of its own: its CA bundle goes into the base,
  # and pip (which otherwise trusts only its vendored certifi) is pointed at it.
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
  tar -C "$root" -c . | podman import --quiet --change 'CMD ["/bin/bash"]' \
    --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' - "$BASE_IMAGE" >/dev/null
  rm -rf "$root"
  say "imported $BASE_IMAGE"
}

if docker_answers && ! command -v podman >/dev/null; then
  say "a Docker engine answers; nothing to install (base images come from its registry)"
  exit 0
fi
install_podman
configure_podman
serve_docker_api
make_base_image
