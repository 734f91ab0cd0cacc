# Sourced by etc/up and etc/test: make .venv (once) and install the project into it.
# Usage: ensure_venv [EXTRAS]   e.g. ensure_venv test
ensure_venv() {
  local extras=${1:-}
  local py=${PYTHON:-python3}
  if ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "jobvisor needs Python 3.11 or newer ($py is $("$py" -V 2>&1))" >&2
    return 1
  fi
  if [ ! -x .venv/bin/python ]; then
    if ! "$py" -m venv .venv 2>/dev/null; then
      rm -rf .venv
      if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing python3-venv (Debian ships venv separately)" >&2
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
        "$py" -m venv .venv
      else
        echo "cannot create a virtualenv: install python3-venv (sudo apt-get install python3-venv)" >&2
        return 1
      fi
    fi
    .venv/bin/python -m pip install -q --upgrade pip
  fi
  local target=.
  [ -n "$extras" ] && target=".[$extras]"
  # Editable, in setuptools' compat mode: the venv finds the project through one path in a .pth
  # file. The default mode installs an import hook instead, which every Python process of the
  # venv runs at start-up (each python job, each agent, each CLI command): 17 ms of a 30 ms
  # start on a 2-core machine. A setuptools that no longer has compat mode gets the default.
  .venv/bin/python -m pip install -q -e "$target" --config-settings editable_mode=compat 2>/dev/null \
    || .venv/bin/python -m pip install -q -e "$target"
}
