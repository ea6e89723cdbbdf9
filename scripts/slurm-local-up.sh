#!/usr/bin/env bash
# slurm-local-up.sh: a real single-node SLURM cluster on this host (controller and compute node
# in one), for `snakemake --profile slurm` tests and for trying the profile on a laptop.
# Debian/Ubuntu, as root, without systemd. Idempotent: daemons already running are reused.
#
#   sudo scripts/slurm-local-up.sh          # install (apt-get), configure, start, wait for idle
#   sudo scripts/slurm-local-down.sh        # stop what this script started, remove its files
#
# Environment: FLORENZ_SLURM_BASE (default /tmp/florenz-slurm: config, state, logs, pid files),
# FLORENZ_SLURM_PARTITION (default debug). No accounting (no slurmdbd): `sacct` does not answer,
# so the profile asks `squeue` for job states (finished jobs stay there MinJobAge=300 s).
set -euo pipefail

BASE=${FLORENZ_SLURM_BASE:-/tmp/florenz-slurm}
PARTITION=${FLORENZ_SLURM_PARTITION:-debug}

if [ "$(id -u)" != 0 ]; then
    echo "slurm-local-up: must run as root (apt-get, munge key, /etc/slurm)" >&2
    exit 1
fi
t_start=$(date +%s)
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# 1. packages: the postinst scripts cannot start the services without systemd, which is harmless
missing=""
for p in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# 2. munge: key, socket directory, daemon (started here only if none runs yet)
if [ ! -s /etc/munge/munge.key ]; then
    mungekey --create --keyfile=/etc/munge/munge.key
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
mkdir -p "$BASE"/{etc,state,spool/slurmd,log,run}
if alive /run/munge/munged.pid; then
    echo "slurm-local-up: reusing the running munged (pid $(cat /run/munge/munged.pid))"
else
    runuser -u munge -- /usr/sbin/munged
    touch "$BASE/run/munged.ours"   # slurm-local-down.sh stops only a munged started here
fi
for _ in $(seq 50); do
    munge -n </dev/null | unmunge >/dev/null 2>&1 && break
    sleep 0.1
done
munge -n </dev/null | unmunge >/dev/null

# 3. slurm.conf: this host is the only node, with all its CPUs and 90 % of its memory. No cgroups
#    (proctrack/linuxproc, task/none), consumable cores and memory, no accounting.
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$BASE/etc/slurm.conf" <<EOF
# written by florenz scripts/slurm-local-up.sh
ClusterName=florenz-local
SlurmctldHost=${HOST}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
MpiDefault=none
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
MinJobAge=300
SlurmctldPidFile=$BASE/run/slurmctld.pid
SlurmdPidFile=$BASE/run/slurmd.pid
SlurmdSpoolDir=$BASE/spool/slurmd
StateSaveLocation=$BASE/state
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM_MB} State=UNKNOWN
PartitionName=${PARTITION} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
# The config sits at the compiled-in path: the jobstep executor inside each job drops SLURM_*
# variables (SLURM_CONF too) before its `srun`. An existing real config is kept aside and restored.
mkdir -p /etc/slurm
if [ -e /etc/slurm/slurm.conf ] && [ ! -L /etc/slurm/slurm.conf ]; then
    mv /etc/slurm/slurm.conf /etc/slurm/slurm.conf.before-florenz
fi
ln -sfn "$BASE/etc/slurm.conf" /etc/slurm/slurm.conf

# 4. daemons: both daemonize and write the pid files named in slurm.conf
alive "$BASE/run/slurmctld.pid" || /usr/sbin/slurmctld
alive "$BASE/run/slurmd.pid" || /usr/sbin/slurmd

state=""
for _ in $(seq 150); do
    state=$(sinfo -h -n "$HOST" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.2
done
if [ "$state" != idle ]; then
    echo "slurm-local-up: node $HOST is '$state', not idle" >&2
    tail -n 30 "$BASE"/log/*.log >&2 || true
    exit 1
fi

# 5. smoke test: one job step through the controller and the node
if ! out=$(timeout 60 srun -N1 -n1 -t 1 hostname 2>&1); then
    echo "slurm-local-up: srun smoke test failed: $out" >&2
    tail -n 30 "$BASE"/log/*.log >&2 || true
    exit 1
fi
sinfo
echo "slurm-local-up: ready in $(( $(date +%s) - t_start )) s (srun ran on $out; logs in $BASE/log)"
