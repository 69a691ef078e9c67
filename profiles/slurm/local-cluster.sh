#!/usr/bin/env bash
# A real one-node SLURM cluster on this machine, to run the workflow through
# profiles/slurm as on a cluster (tests/test_slurm_cluster.py, `make slurm-test`).
#
#   profiles/slurm/local-cluster.sh install   Debian's slurm-wlm and munge (needs root)
#   profiles/slurm/local-cluster.sh start     write the config, start munged, slurmctld, slurmd
#   profiles/slurm/local-cluster.sh stop      stop the three daemons by their PIDs
#   profiles/slurm/local-cluster.sh status    sinfo of the running cluster
#
# Everything lives under $SLURM_LOCAL_DIR (default /tmp/scprob-slurm): slurm.conf and
# gres.conf (linked from /etc/slurm, where job steps look; a machine with a SLURM config of
# its own is left alone), state and spool folders, logs and PID files. No systemd: the daemons are
# started directly, with the settings a container allows (proctrack/linuxproc, no task
# plugin, no accounting database). A gres.conf of one GPU on /dev/null lets GPU requests
# schedule; nothing runs on a GPU.
set -euo pipefail

DIR="${SLURM_LOCAL_DIR:-/tmp/scprob-slurm}"
CONF="$DIR/slurm.conf"
export SLURM_CONF="$CONF"

node_name() { hostname -s; }

# The node is declared as large as a cluster node of profiles/slurm's sizing (16 cores,
# 128 GiB; SLURM_LOCAL_CPUS, SLURM_LOCAL_MEMORY_MB), whatever this machine has, and
# slurmd is told to trust the declaration (config_overrides): the profile's requests then
# schedule unchanged, so the test runs the profile a cluster would, on a small machine.
NODE_CPUS="${SLURM_LOCAL_CPUS:-16}"
NODE_MEMORY_MB="${SLURM_LOCAL_MEMORY_MB:-131072}"

write_config() {
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge" "$DIR/run"
  local node
  node="$(node_name)"
  cat >"$CONF" <<EOF
ClusterName=scprob
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
SlurmdParameters=config_overrides
NodeName=$node CPUs=$NODE_CPUS RealMemory=$NODE_MEMORY_MB Gres=gpu:1 State=UNKNOWN
PartitionName=cpu Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF
  echo "Name=gpu File=/dev/null" >"$DIR/gres.conf"
  link_system_config
}

# The job steps Snakemake starts inside a job (srun) look for the config at the system
# path, not in SLURM_CONF: link it there, unless a real cluster's config is in place.
link_system_config() {
  mkdir -p /etc/slurm
  for name in slurm.conf gres.conf; do
    local system="/etc/slurm/$name"
    if [[ -e "$system" && ! -L "$system" ]]; then
      echo "$system exists and is not this script's link: this machine has a SLURM" \
        "configuration of its own, which this script will not replace." >&2
      exit 2
    fi
    ln -sfn "$DIR/$name" "$system"
  done
}

start_munge() {
  # munged refuses a key or socket folder others can read; --force lets it run as root.
  local key="$DIR/munge/munge.key"
  if [[ ! -s "$key" ]]; then
    dd if=/dev/urandom of="$key" bs=1024 count=1 status=none
  fi
  chmod 0700 "$DIR/munge"
  chmod 0400 "$key"
  mkdir -p /run/munge
  munged --force --key-file="$key" --pid-file="$DIR/run/munged.pid" \
    --socket=/run/munge/munge.socket.2 --log-file="$DIR/log/munged.log" \
    --seed-file="$DIR/munge/munged.seed"
}

wait_for_node() {
  for _ in $(seq 1 60); do
    if sinfo --noheader --states=idle,mixed,allocated -o "%N" 2>/dev/null | grep -q .; then
      return 0
    fi
    sleep 1
  done
  echo "the SLURM node did not come up; see $DIR/log/" >&2
  return 1
}

start() {
  if [[ -s "$DIR/run/slurmctld.pid" ]] && kill -0 "$(cat "$DIR/run/slurmctld.pid")" 2>/dev/null; then
    echo "already running (SLURM_CONF=$CONF)"
    return 0
  fi
  for daemon in munged slurmctld slurmd; do
    command -v "$daemon" >/dev/null || {
      echo "$daemon is not installed: run '$0 install' (Debian: slurm-wlm, munge)" >&2
      exit 2
    }
  done
  write_config
  start_munge
  # -c: a clean start, forgetting the jobs of an earlier run of this folder.
  slurmctld -c -f "$CONF"
  slurmd -f "$CONF"
  wait_for_node
  echo "SLURM is up: export SLURM_CONF=$CONF"
}

stop() {
  for name in slurmd slurmctld munged; do
    local pidfile="$DIR/run/$name.pid"
    if [[ -s "$pidfile" ]]; then
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    fi
  done
  for name in slurm.conf gres.conf; do
    if [[ -L "/etc/slurm/$name" ]]; then rm -f "/etc/slurm/$name"; fi
  done
}

case "${1:-}" in
  install)
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge ||
      { apt-get update -q && apt-get install -y -q slurm-wlm munge; } ;;
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 install|start|stop|status" >&2; exit 2 ;;
esac
