#!/usr/bin/env bash
# Testbed of the sbatch driver: a single-node Slurm cluster (munge, slurmctld, slurmd) and an
# SSH "login node" (an sshd on a loopback port) with a test user, on this machine.
#
# Idempotent: installs and starts only what is missing, so etc/test runs it every time. Needs
# root on Debian (apt-get); without root it says so and exits 0 (the sbatch tests then skip,
# or fail under CI=true).
#
# What the tests read (all in $STATE, mode 0700, files 0600, root only):
#   testbed.env       SSH_PORT, SSH_USER, VENVS, ...  (shell syntax)
#   user_key          the test user's private key (its .pub is in ~hpcuser/.ssh/authorized_keys)
#   password          the test user's password (random, made on first run)
#   known_hosts       the sshd's host key for [127.0.0.1]:PORT
# The project is installed (not editable) into $VENV (one per checkout), readable by the test
# user, on every run.
set -euo pipefail
cd "$(dirname "$0")/../.."
CHECKOUT=$(pwd)

STATE=${JOBVISOR_TESTBED_STATE:-/var/lib/jobvisor-testbed}
OPT=${JOBVISOR_TESTBED_OPT:-/opt/jobvisor-testbed}
# one venv per checkout (named by a hash of its path), so checkouts tested at the same time on
# one machine never run each other's code; tests/drivers/slurmbed.py derives the same name
VENV=$OPT/venvs/$(printf '%s' "$CHECKOUT" | sha256sum | cut -c1-12)
TEST_USER=hpcuser
SSH_PORT=${JOBVISOR_TESTBED_SSH_PORT:-2222}
WAIT=60  # seconds any one thing may take to come up

say() { echo "start-slurm: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
  say "not root: the Slurm/sshd testbed is not started (the sbatch tests will skip outside CI)"
  exit 0
fi

# ------------------------------------------------------------------ packages
need=()
command -v slurmctld >/dev/null || need+=(slurm-wlm)
command -v munged >/dev/null || [ -x /usr/sbin/munged ] || need+=(munge)
[ -x /usr/sbin/sshd ] || need+=(openssh-server)
/usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

install -d -m 700 "$STATE"

# ------------------------------------------------------------------ munge
if ! munge -n >/dev/null 2>&1; then
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
  fi
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
  install -d -o munge -g munge -m 755 /run/munge
  su -s /bin/sh munge -c /usr/sbin/munged
fi
for _ in $(seq $((WAIT * 10))); do munge -n >/dev/null 2>&1 && break; sleep 0.1; done
munge -n >/dev/null || { say "munged does not answer"; exit 1; }

# ------------------------------------------------------------------ slurm
H=$(hostname)
CPUS=$(nproc)
MEM_MB=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 * 9 / 10 ))  # what slurmd will find, less a margin
CONF=/etc/slurm/slurm.conf
WANT=$(cat <<EOF
# written by jobvisor etc/testbed/start-slurm.sh: a single-node test cluster
ClusterName=local
SlurmctldHost=$H
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmUser=root
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/lib/slurm/slurmd
StateSaveLocation=/var/lib/slurm/slurmctld
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
KillWait=5
MinJobAge=300
NodeName=$H CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF
)
mkdir -p /etc/slurm /var/lib/slurm/slurmd /var/lib/slurm/slurmctld /var/log/slurm
restart=0
if [ "$(cat "$CONF" 2>/dev/null)" != "$WANT" ]; then
  printf '%s\n' "$WANT" >"$CONF"
  restart=1
fi
stop_pidfile() {
  local f=$1
  [ -s "$f" ] || return 0
  local pid; pid=$(cat "$f")
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
}
# A pid file may outlive its process (a machine restored from a snapshot keeps /run and $STATE)
# and its pid may by now belong to another program: alive only when the name matches too.
alive() {
  local f=$1 name=$2 pid
  [ -s "$f" ] || return 1
  pid=$(cat "$f")
  kill -0 "$pid" 2>/dev/null && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$name" ]
}
if [ "$restart" = 1 ]; then
  alive /run/slurmd.pid slurmd && stop_pidfile /run/slurmd.pid
  alive /run/slurmctld.pid slurmctld && stop_pidfile /run/slurmctld.pid
fi
alive /run/slurmctld.pid slurmctld || slurmctld
alive /run/slurmd.pid slurmd || slurmd
idle=0
for _ in $(seq $((WAIT * 5))); do
  state=$(sinfo -h -n "$H" -o '%t' 2>/dev/null | head -1 || true)
  case "$state" in
    idle|mix|alloc) idle=1; break ;;
    down*|drain*) scontrol update NodeName="$H" State=RESUME >/dev/null 2>&1 || true ;;
  esac
  sleep 0.2
done
[ "$idle" = 1 ] || { say "the Slurm node did not become idle: $(sinfo 2>&1 | tail -2)"; exit 1; }

# ------------------------------------------------------------------ the test user
if ! id "$TEST_USER" >/dev/null 2>&1; then
  useradd -m -s /bin/bash "$TEST_USER"
fi
HOME_DIR=$(getent passwd "$TEST_USER" | cut -d: -f6)
if [ ! -s "$STATE/password" ]; then
  (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$STATE/password")
fi
echo "$TEST_USER:$(cat "$STATE/password")" | chpasswd
if [ ! -s "$STATE/user_key" ]; then
  ssh-keygen -q -t ed25519 -N '' -C "jobvisor-testbed" -f "$STATE/user_key"
fi
install -d -m 700 -o "$TEST_USER" -g "$TEST_USER" "$HOME_DIR/.ssh"
install -m 600 -o "$TEST_USER" -g "$TEST_USER" "$STATE/user_key.pub" "$HOME_DIR/.ssh/authorized_keys"
install -d -m 700 -o "$TEST_USER" -g "$TEST_USER" "$HOME_DIR/scratch"

# ------------------------------------------------------------------ sshd on loopback
[ -s "$STATE/host_key" ] || ssh-keygen -q -t ed25519 -N '' -f "$STATE/host_key"
cat >"$STATE/sshd_config" <<EOF
Port $SSH_PORT
ListenAddress 127.0.0.1
HostKey $STATE/host_key
PidFile $STATE/sshd.pid
PubkeyAuthentication yes
PasswordAuthentication yes
KbdInteractiveAuthentication no
UsePAM yes
PermitRootLogin no
AllowUsers $TEST_USER
MaxSessions 100
MaxStartups 100:30:200
ClientAliveInterval 30
AcceptEnv LANG LC_*
Subsystem sftp internal-sftp
EOF
chmod 600 "$STATE/sshd_config"
mkdir -p /run/sshd
start_sshd() {
  rm -f "$STATE/sshd.pid"
  echo "--- start-slurm: sshd started $(date -Is)" >>"$STATE/sshd.log"
  /usr/sbin/sshd -f "$STATE/sshd_config" -E "$STATE/sshd.log"
}
sshd_answers() {  # $1: how many tenths of a second to keep trying
  for _ in $(seq "$1"); do
    if ssh-keyscan -T 2 -p "$SSH_PORT" -t ed25519 127.0.0.1 >"$STATE/known_hosts.new" 2>/dev/null \
        && [ -s "$STATE/known_hosts.new" ]; then
      mv "$STATE/known_hosts.new" "$STATE/known_hosts"; return 0
    fi
    sleep 0.1
  done
  return 1
}
alive "$STATE/sshd.pid" sshd || start_sshd
if ! sshd_answers 30; then
  # ours looked alive but does not answer (or did not start): start it once more, afresh
  say "sshd on 127.0.0.1:$SSH_PORT does not answer yet; restarting it"
  alive "$STATE/sshd.pid" sshd && stop_pidfile "$STATE/sshd.pid"
  start_sshd
  sshd_answers $((WAIT * 10)) || {
    say "sshd on 127.0.0.1:$SSH_PORT does not answer; its log ends with:"
    tail -5 "$STATE/sshd.log" >&2 || true
    say "what listens on port $SSH_PORT: $(ss -ltnp "sport = :$SSH_PORT" 2>&1 | tail -n +2)"
    exit 1
  }
fi
chmod 600 "$STATE/known_hosts"

# ------------------------------------------------------------------ the project, for the test user
# The test user cannot read a checkout under /root: install a copy into a world-readable venv.
install -d -m 755 "$OPT" "$OPT/venvs"
if [ ! -x "$VENV/bin/python" ]; then
  /usr/bin/python3 -m venv "$VENV"
fi
SRC=$(mktemp -d)
trap 'rm -rf "$SRC"' EXIT
tar -C "$CHECKOUT" --exclude ./.git --exclude ./.venv --exclude '*.egg-info' --exclude ./build \
  --exclude __pycache__ --exclude ./state -cf - . | tar -C "$SRC" -xf -
pip_install() {
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" >"$STATE/pip.log" 2>&1 \
    || { cat "$STATE/pip.log" >&2; say "installing the project into $VENV failed"; exit 1; }
}
pip_install "$SRC"
pip_install --no-deps --force-reinstall "$SRC"
chmod -R a+rX "$OPT"
su -s /bin/sh "$TEST_USER" -c "$VENV/bin/python -c 'import agent.app, drivers'" \
  || { say "the test user cannot import the project from $VENV"; exit 1; }

cat >"$STATE/testbed.env" <<EOF
SSH_HOST=127.0.0.1
SSH_PORT=$SSH_PORT
SSH_USER=$TEST_USER
VENVS=$OPT/venvs
SLURM_PARTITION=debug
SLURM_NODE=$H
REMOTE_HOME=$HOME_DIR
EOF
chmod 600 "$STATE/testbed.env" "$STATE/password" "$STATE/user_key"
say "Slurm ($H, $CPUS cpus) and sshd (127.0.0.1:$SSH_PORT, user $TEST_USER) are up"
