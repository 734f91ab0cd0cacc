#!/usr/bin/env bash
# Testbed for the docker driver (run by etc/test before pytest; safe to run again):
#   1. install Docker's engine from Debian's packages when `dockerd` is missing (root + apt);
#   2. start `dockerd` in the background when `docker info` does not answer, and wait for it;
#   3. build the local agent image (etc/docker/make-local-image.sh: no registry needed).
# Without root or apt, it says what is missing and leaves the docker tests to skip (outside CI)
# or fail (CI=true) with that reason.
set -euo pipefail
cd "$(dirname "$0")/../.."

WAIT_SECONDS=${JOBVISOR_DOCKERD_WAIT:-60}
LOG_DIR=${JOBVISOR_TESTBED_LOG_DIR:-/var/log/jobvisor-testbed}

say() { echo "start-docker: $*" >&2; }

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

install_engine() {
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    say "dockerd is not installed and this is not a root Debian machine: install docker.io (or Docker Engine) yourself"
    return 1
  fi
  say "installing docker.io from Debian's packages"
  # Another installer may hold the dpkg lock (e.g. a concurrent testbed script): wait for it.
  apt-get -o DPkg::Lock::Timeout=600 update -qq || return 1
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq docker.io >/dev/null || return 1
}

start_engine() {
  if [ "$(id -u)" != 0 ]; then
    say "the Docker engine is not running and only root can start it here (try: sudo $0)"
    return 1
  fi
  mkdir -p "$LOG_DIR"
  # A pid file left by an engine that is gone (a machine restored from a snapshot) makes dockerd
  # refuse to start when its pid now belongs to another program.
  local pidfile=/var/run/docker.pid
  if [ -s "$pidfile" ] && [ "$(cat "/proc/$(cat "$pidfile")/comm" 2>/dev/null)" != dockerd ]; then
    rm -f "$pidfile"
  fi
  say "starting dockerd in the background (log: $LOG_DIR/dockerd.log)"
  # Its own session, so it outlives this script and a Ctrl-C of the test run.
  setsid dockerd >>"$LOG_DIR/dockerd.log" 2>&1 </dev/null &
  local waited=0
  until engine_answers; do
    if [ "$waited" -ge "$WAIT_SECONDS" ]; then
      say "dockerd did not answer within ${WAIT_SECONDS} s; its log ends with:"
      tail -n 20 "$LOG_DIR/dockerd.log" >&2 || true
      return 1
    fi
    sleep 1
    waited=$((waited + 1))
  done
  say "dockerd answers (after ${waited} s)"
}

if ! command -v dockerd >/dev/null && ! engine_answers; then
  install_engine || exit 0
fi
if ! engine_answers; then
  start_engine || exit 0
fi
bash etc/docker/make-local-image.sh
