#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for tests and trying array jobs.
#
#   bash scripts/local-slurm.sh start    install if missing, configure, start, wait for idle
#   bash scripts/local-slurm.sh status   daemons, controller and node state (exit 3 if down)
#   bash scripts/local-slurm.sh stop     cancel jobs, stop the daemons this script started
#
# Needs root and Debian/Ubuntu packages (slurmctld slurmd slurm-client munge); no systemd
# and no cgroups are needed. Every command is idempotent: `start` reuses daemons that are
# already up, `stop` only ever signals the PIDs that `start` recorded.
#
#   LOCAL_SLURM_DIR       state, spool, logs and PID files   (default /tmp/local-slurm)
#   LOCAL_SLURM_KILLWAIT  seconds from SIGTERM to SIGKILL    (default 30, SLURM's default)
#   LOCAL_SLURM_MEM       node RealMemory in MB              (default 1024, capped at hardware)
#   LOCAL_SLURM_MAX_ARRAY MaxArraySize: array ids 0..N-1     (default 1001, SLURM's default)
set -euo pipefail

BASE=${LOCAL_SLURM_DIR:-/tmp/local-slurm}
KILLWAIT=${LOCAL_SLURM_KILLWAIT:-30}
MAX_ARRAY=${LOCAL_SLURM_MAX_ARRAY:-1001}
PARTITION=local
URGENT=urgent # a job here preempts (requeues) jobs of $PARTITION: preemption, for real
NODE=$(hostname -s)
PIDS=$BASE/run
LOGS=$BASE/log
POLICY=/usr/sbin/policy-rc.d

say() { echo "[local-slurm] $*"; }
now_ms() { local t=${EPOCHREALTIME/[.,]/}; echo $((t / 1000)); }
T0=$(now_ms)
T=$T0
secs() { printf '%d.%02d' $(($1 / 1000)) $(($1 % 1000 / 10)); }
lap() { local n; n=$(now_ms); printf '[local-slurm] %-26s %6ss\n' "$1" "$(secs $((n - T)))"; T=$n; }

die() {
  echo "[local-slurm] error: $*" >&2
  local f
  for f in "$LOGS/slurmctld.log" "$LOGS/slurmd.log" /var/log/munge/munged.log; do
    if [ -f "$f" ]; then { echo "== last lines of $f"; tail -n 30 "$f"; } >&2; fi
  done
  exit 1
}

# running PIDFILE NAME: the PID file names a live process called NAME (not a reused PID).
running() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "$2" ]
}
munge_works() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }
controller_up() { [[ $(scontrol ping 2>/dev/null) == *"is UP"* ]]; }
node_state() { sinfo -h -n "$NODE" -o %t 2>/dev/null || true; }
installed() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null &&
    command -v sbatch >/dev/null && command -v munged >/dev/null
}

# --- start -------------------------------------------------------------------------------

restore_policy() {
  if [ -e "$POLICY.local-slurm-saved" ]; then
    mv -f "$POLICY.local-slurm-saved" "$POLICY"
  else
    rm -f "$POLICY"
  fi
}

install_packages() {
  if installed; then
    lap "install (already there)"
    return
  fi
  export DEBIAN_FRONTEND=noninteractive
  # Without systemd, the packages' postinst would start munged and the SLURM daemons from
  # /etc/init.d; a policy-rc.d that exits 101 forbids it, so every daemon running is ours.
  # (A saved copy left by an interrupted run is the original: keep it.)
  if [ -e "$POLICY" ] && [ ! -e "$POLICY.local-slurm-saved" ]; then
    mv -f "$POLICY" "$POLICY.local-slurm-saved"
  fi
  trap restore_policy EXIT
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  # Package lists are fetched only when they do not know slurmd yet (a fresh machine).
  apt-cache show slurmd >/dev/null 2>&1 || apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  restore_policy
  trap - EXIT
  installed || die "packages installed but slurmctld/slurmd/sbatch/munged are not on PATH"
  lap "install (apt)"
}

write_config() {
  mkdir -p "$BASE/state" "$BASE/spool" "$LOGS" "$PIDS" /etc/slurm
  [ -s /etc/munge/munge.key ] || mungekey --create --force --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge /etc/munge/munge.key
  chmod 700 /etc/munge
  chmod 400 /etc/munge/munge.key
  # systemd would create /run/munge; without it, munged refuses to start.
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  chmod 755 /run/munge

  local cpus hw_mem mem
  cpus=$(nproc)
  hw_mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=${LOCAL_SLURM_MEM:-1024}
  # A RealMemory above what slurmd measures drains the node.
  if [ -n "$hw_mem" ] && [ "$mem" -gt "$hw_mem" ]; then mem=$hw_mem; fi

  # linuxproc/none plugins: no cgroups, no accounting database. 127.0.0.1 everywhere: no
  # name lookup. ReturnToService=2: a node that was down comes back when slurmd answers.
  # sched_interval=1: pending array tasks start within a second of a free CPU instead of
  # waiting for the next event (a 4-task array on 2 CPUs: about 2 s instead of 5-6 s).
  # A job in the `urgent` partition preempts jobs of `local`, which SLURM requeues.
  cat >"$BASE/slurm.conf.new" <<EOF
# Written by scripts/local-slurm.sh; rewritten on every start.
ClusterName=local
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$PIDS/slurmctld.pid
SlurmdPidFile=$PIDS/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
ReturnToService=2
KillWait=$KILLWAIT
MaxArraySize=$MAX_ARRAY
MailProg=/bin/true
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$NODE Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=$URGENT Nodes=$NODE MaxTime=INFINITE State=UP PriorityTier=10
EOF
  CONFIG_CHANGED=0
  cmp -s "$BASE/slurm.conf.new" /etc/slurm/slurm.conf || CONFIG_CHANGED=1
  mv -f "$BASE/slurm.conf.new" /etc/slurm/slurm.conf
  lap "configure"
}

start_munged() {
  if munge_works; then
    [ -s "$PIDS/munged.pid" ] || say "munged is already running (not started here; stop leaves it)"
  else
    runuser -u munge -- /usr/sbin/munged || die "munged failed to start"
    for _ in $(seq 50); do munge_works && break; sleep 0.1; done
    munge_works || die "munge credential round trip failed"
    cp /run/munge/munged.pid "$PIDS/munged.pid"
  fi
  lap "start munged"
}

controller_max_array() {
  scontrol show config 2>/dev/null | sed -n 's/^MaxArraySize *= *\([0-9]*\).*/\1/p'
}

wait_controller() {
  for _ in $(seq 150); do controller_up && break; sleep 0.2; done
  controller_up || die "slurmctld does not answer scontrol ping"
}

start_slurmctld() {
  if ! running "$PIDS/slurmctld.pid" slurmctld; then
    slurmctld -c || die "slurmctld failed to start" # -c: forget jobs of an earlier cluster
    CONFIG_CHANGED=0
  fi
  wait_controller
  if [ "$CONFIG_CHANGED" = 1 ]; then
    # Not `scontrol reconfigure`: a running controller applies some limits (MaxArraySize)
    # only seconds after it returns, so a submission right after start saw the old ones.
    # A restart reads the new file before it answers; without -c it keeps its jobs.
    stop_daemon "$PIDS/slurmctld.pid" slurmctld >/dev/null
    slurmctld || die "slurmctld failed to restart"
    wait_controller
    say "slurm.conf changed: controller restarted"
  fi
  local seen
  seen=$(controller_max_array)
  [ "$seen" = "$MAX_ARRAY" ] || die "the controller has MaxArraySize=${seen:-?}, not $MAX_ARRAY"
  lap "start slurmctld"
}

start_slurmd() {
  running "$PIDS/slurmd.pid" slurmd || slurmd -N "$NODE" || die "slurmd failed to start"
  local state=""
  for _ in $(seq 150); do
    state=$(node_state)
    case "$state" in
      idle | mix | alloc) break ;;
      drain* | down*) scontrol update nodename="$NODE" state=resume 2>/dev/null || true ;;
    esac
    sleep 0.2
  done
  case "$state" in
    idle | mix | alloc) ;;
    *) die "node $NODE is not usable (state '${state:-none}')" ;;
  esac
  lap "start slurmd, node $state"
}

cmd_start() {
  [ "$(id -u)" = 0 ] || die "must run as root"
  install_packages
  write_config
  start_munged
  start_slurmctld
  start_slurmd
  printf '[local-slurm] %-26s %6ss\n' "cluster up in" "$(secs $(($(now_ms) - T0)))"
  sinfo
}

# --- stop --------------------------------------------------------------------------------

# stop_daemon PIDFILE NAME: SIGTERM the recorded PID if it is still NAME, SIGKILL after 20 s.
stop_daemon() {
  local file=$1 name=$2 pid
  if ! pid=$(cat "$file" 2>/dev/null); then
    say "$name: no PID file, nothing to stop"
    return 0
  fi
  if running "$file" "$name"; then
    kill -TERM "$pid"
    for _ in $(seq 100); do [ -d "/proc/$pid" ] || break; sleep 0.2; done
    if [ -d "/proc/$pid" ]; then
      say "$name ($pid) ignored SIGTERM for 20 s: SIGKILL"
      kill -KILL "$pid"
    fi
    say "$name ($pid) stopped"
  else
    say "$name: PID ${pid:-?} is not running"
  fi
  rm -f "$file"
}

cmd_stop() {
  # Jobs first, while the controller is up: their slurmstepd processes outlive slurmd.
  if controller_up && [ -n "$(squeue -h -o %i 2>/dev/null)" ]; then
    scancel --partition="$PARTITION" 2>/dev/null || true
    scancel --partition="$URGENT" 2>/dev/null || true
    local wait_s
    wait_s=$(scontrol show config 2>/dev/null | sed -n 's/^KillWait *= *\([0-9]*\).*/\1/p')
    for _ in $(seq $(((${wait_s:-30} + 15) * 5))); do
      [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
      sleep 0.2
    done
    lap "cancel jobs"
  fi
  stop_daemon "$PIDS/slurmd.pid" slurmd
  lap "stop slurmd"
  stop_daemon "$PIDS/slurmctld.pid" slurmctld
  lap "stop slurmctld"
  stop_daemon "$PIDS/munged.pid" munged
  lap "stop munged"
}

# --- status ------------------------------------------------------------------------------

cmd_status() {
  local ok=0 name
  for name in munged slurmctld slurmd; do
    if running "$PIDS/$name.pid" "$name"; then
      say "$name: running, PID $(cat "$PIDS/$name.pid")"
    else
      say "$name: not running (from $PIDS)"
      ok=3
    fi
  done
  if controller_up; then
    say "node $NODE: $(node_state)"
    sinfo
    squeue
  else
    say "controller: not answering"
    ok=3
  fi
  return $ok
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  *)
    echo "usage: bash scripts/local-slurm.sh start|stop|status" >&2
    exit 2
    ;;
esac
