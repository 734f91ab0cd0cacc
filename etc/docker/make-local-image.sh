#!/usr/bin/env bash
# Make an agent image on a machine with no registry: an empty root file system imported as an
# image. Containers of it run this machine's Python and jobvisor, bind-mounted read-only by the
# driver: set `[docker] image` to the name below and `[docker] host_runtime = true`
# (the local engine only; for other hosts build etc/docker/Dockerfile).
# Usage: etc/docker/make-local-image.sh [NAME:TAG]     (default jobvisor-agent:local; idempotent)
set -euo pipefail
image=${1:-jobvisor-agent:local}
if docker image inspect "$image" >/dev/null 2>&1; then
  echo "make-local-image: $image is there" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/root"
tar -C "$work/root" -cf "$work/root.tar" .
docker import \
  --change 'LABEL org.opencontainers.image.title=jobvisor-agent-local' \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$work/root.tar" "$image" >/dev/null
echo "make-local-image: made $image (empty root; run with [docker] host_runtime = true)" >&2
