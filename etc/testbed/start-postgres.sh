#!/usr/bin/env bash
# Testbed of the PostgreSQL store (run by etc/test before pytest; safe to run again): installs
# Debian's `postgresql` package when its initdb is missing (root + apt). It starts no server:
# the tests start an unprivileged cluster of their own in a temp dir on a free port, as the
# `postgres` user when run as root, and stop it at the end (tests/pgbed.py).
# Without root or apt, it says what is missing and leaves the PostgreSQL tests to skip (outside
# CI) or fail (CI=true) with that reason.
set -euo pipefail

say() { echo "start-postgres: $*" >&2; }

have_initdb() {
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || command -v initdb >/dev/null
}

if have_initdb; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  say "PostgreSQL is not installed and this is not a root Debian machine: install postgresql yourself"
  say "(its initdb and pg_ctl on PATH, or under /usr/lib/postgresql/N/bin)"
  exit 0
fi
say "installing postgresql from Debian's packages"
# Another installer may hold the dpkg lock (e.g. a concurrent testbed script): wait for it.
apt-get -o DPkg::Lock::Timeout=600 update -qq || { say "apt-get update failed"; exit 0; }
# policy-rc.d: the package's post-install must not start a system-wide cluster (no systemd here,
# and the tests want none); it refuses with 101, which dpkg takes as "not now".
policy=/usr/sbin/policy-rc.d
made_policy=
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made_policy=1
fi
DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq postgresql >/dev/null \
  || say "installing postgresql failed; the PostgreSQL tests will skip (or fail in CI)"
[ -n "$made_policy" ] && rm -f "$policy"
if have_initdb; then
  say "postgresql installed: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | tail -n 1)"
fi
