#!/usr/bin/env bash
# A real single-node SLURM cluster on this machine, for testing the workflow's SLURM path:
# munge, MariaDB + slurmdbd (so sacct works), slurmctld and slurmd on loopback, with optional
# fake GPU devices so rules that ask for GPUs are scheduled. Debian/Ubuntu, as root, no systemd.
#
#   scripts/slurm/local_cluster.sh start [--gpus N]   install if needed, start, wait until idle
#   scripts/slurm/local_cluster.sh stop               stop every daemon (reverse order)
#   scripts/slurm/local_cluster.sh status             sinfo
#
# Idempotent: start on a running cluster checks it, cancels the jobs an earlier (interrupted) run
# left and waits until the node is idle. State lives under $DABENCH_SLURM_DIR
# (default /tmp/dabench-slurm); /etc/slurm/slurm.conf is a symlink into it (the jobstep plugin
# strips SLURM_CONF, so slurm.conf must be at the default path).
set -euo pipefail

DIR=${DABENCH_SLURM_DIR:-/tmp/dabench-slurm}
DB_PORT=${DABENCH_SLURM_DB_PORT:-3307}
CMD=${1:-status}
GPUS=2
[ "${2:-}" = "--gpus" ] && GPUS=${3:-2}

log() { echo "[local_cluster] $*" >&2; }
need_root() { [ "$(id -u)" = 0 ] || { log "must run as root"; exit 2; }; }

install_packages() {
  local pkgs="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
  local missing=""
  for p in $pkgs; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  log "installing$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q --no-install-recommends $missing >/dev/null; }
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_configs() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 * 85 / 100 ))
  mkdir -p "$DIR"/{state,spool,log,run,db,gpu}
  local gres_line="" gres_node=""
  if [ "$GPUS" -gt 0 ]; then
    for i in $(seq 0 $((GPUS - 1))); do
      [ -c "$DIR/gpu/nvidia$i" ] || mknod "$DIR/gpu/nvidia$i" c 1 3
    done
    gres_line="GresTypes=gpu"
    gres_node="Gres=gpu:h100:$GPUS"
    echo "NodeName=$host Name=gpu Type=h100 File=$DIR/gpu/nvidia[0-$((GPUS - 1))]" > "$DIR/gres.conf"
  else
    : > "$DIR/gres.conf"
  fi
  cat > "$DIR/slurm.conf" <<CONF
ClusterName=dabench
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
MpiDefault=none
ReturnToService=2
MinJobAge=300
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
$gres_line
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem $gres_node State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=500
CONF
  cat > "$DIR/slurmdbd.conf" <<CONF
AuthType=auth/munge
DbdHost=$host
DbdAddr=127.0.0.1
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
CONF
  chmod 600 "$DIR/slurmdbd.conf"
  mkdir -p /etc/slurm
  ln -sf "$DIR/slurm.conf" /etc/slurm/slurm.conf
  ln -sf "$DIR/gres.conf" /etc/slurm/gres.conf
  ln -sf "$DIR/slurmdbd.conf" /etc/slurm/slurmdbd.conf
}

start_munge() {
  alive "$DIR/run/munged.pid" && return 0
  [ -f /etc/munge/munge.key ] || { mkdir -p /etc/munge; dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
  chown root:root /etc/munge/munge.key 2>/dev/null || true
  chmod 400 /etc/munge/munge.key
  mkdir -p /run/munge /var/lib/munge /var/log/munge
  munged --force --pid-file="$DIR/run/munged.pid" --socket=/run/munge/munge.socket.2
}

start_mariadb() {
  alive "$DIR/run/mariadb.pid" && return 0
  if [ ! -d "$DIR/db/mysql" ]; then
    mariadb-install-db --user=root --datadir="$DIR/db" --auth-root-authentication-method=normal >/dev/null 2>&1
  fi
  (mariadbd --user=root --datadir="$DIR/db" --port="$DB_PORT" --bind-address=127.0.0.1 \
      --socket="$DIR/run/mysqld.sock" --pid-file="$DIR/run/mariadb.pid" \
      --log-error="$DIR/log/mariadb.log" >/dev/null 2>&1 &)
  for _ in $(seq 60); do
    mariadb -uroot --socket="$DIR/run/mysqld.sock" -e "select 1" >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb -uroot --socket="$DIR/run/mysqld.sock" -e \
    "ALTER USER 'root'@'localhost' IDENTIFIED BY ''; CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1'; FLUSH PRIVILEGES;" >/dev/null 2>&1 || true
}

start_daemon() {  # name pidfile command...
  local name=$1 pid=$2; shift 2
  alive "$pid" && return 0
  "$@"
  for _ in $(seq 40); do alive "$pid" && return 0; sleep 0.25; done
  log "$name did not start; see $DIR/log/"
  exit 1
}

start() {
  need_root
  local tic=$SECONDS
  install_packages
  local before=""
  [ -f "$DIR/slurm.conf" ] && before=$(cat "$DIR/slurm.conf" "$DIR/gres.conf" 2>/dev/null)
  write_configs
  if [ -n "$before" ] && [ "$before" != "$(cat "$DIR/slurm.conf" "$DIR/gres.conf")" ] \
      && alive "$DIR/run/slurmctld.pid"; then
    log "configuration changed: restarting the SLURM daemons"
    for name in slurmd slurmctld; do
      kill "$(cat "$DIR/run/$name.pid")" 2>/dev/null || true
      for _ in $(seq 40); do alive "$DIR/run/$name.pid" || break; sleep 0.25; done
      rm -f "$DIR/run/$name.pid"
    done
  fi
  start_munge
  start_mariadb
  start_daemon slurmdbd "$DIR/run/slurmdbd.pid" slurmdbd
  for _ in $(seq 40); do sacctmgr -i -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
  sacctmgr -i add cluster dabench >/dev/null 2>&1 || true
  start_daemon slurmctld "$DIR/run/slurmctld.pid" slurmctld
  start_daemon slurmd "$DIR/run/slurmd.pid" slurmd
  clear_leftovers
  local state=""
  for _ in $(seq 240); do
    state=$(sinfo -h -o %t 2>/dev/null | head -n1)
    case "$state" in
      idle) log "up in $((SECONDS - tic))s (node idle, $GPUS fake GPUs)"; return 0 ;;
      down*|drain*|drng*|fail*)
        scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true ;;
      *) [ -n "$(squeue -h -o %i 2>/dev/null)" ] && clear_leftovers ;;
    esac
    sleep 0.5
  done
  log "node never became idle (state: ${state:-none}; jobs: $(squeue -h -o %i 2>/dev/null | xargs)); see $DIR/log/"
  exit 1
}

# Jobs an earlier, interrupted run left (a killed test, a cancelled workflow): cancelled, so that
# every start hands over an idle node with an empty queue.
clear_leftovers() {
  local jobs
  jobs=$(squeue -h -o %i 2>/dev/null | xargs)
  [ -z "$jobs" ] && return 0
  log "cancelling $(echo "$jobs" | wc -w) job(s) an earlier run left: $jobs"
  scancel --full $jobs >/dev/null 2>&1 || scancel $jobs >/dev/null 2>&1 || true
  for _ in $(seq 120); do
    [ -z "$(squeue -h -o %i 2>/dev/null)" ] && return 0
    sleep 0.5
  done
  log "jobs still queued after cancelling: $(squeue -h -o %i,%T 2>/dev/null | xargs)"
}

stop() {
  for name in slurmd slurmctld slurmdbd mariadb munged; do
    pid="$DIR/run/$name.pid"
    if alive "$pid"; then
      kill "$(cat "$pid")" 2>/dev/null || true
      for _ in $(seq 40); do alive "$pid" || break; sleep 0.25; done
    fi
    rm -f "$pid"
  done
  # Leave no config pointing at the stopped controller: with one, every `scontrol` waits ~9 s for
  # it, and the SLURM executor plugin runs `scontrol show config` whenever Snakemake starts
  # (every later snakemake call, tests included, would pay those 9 s).
  for conf in slurm.conf gres.conf slurmdbd.conf; do
    [ "$(readlink "/etc/slurm/$conf" 2>/dev/null)" = "$DIR/$conf" ] && rm -f "/etc/slurm/$conf"
  done
  log "stopped"
}

case "$CMD" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start [--gpus N] | stop | status" >&2; exit 2 ;;
esac
