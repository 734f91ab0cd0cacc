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
  .venv/bin/python -m pip install -q -e "$target"
}
