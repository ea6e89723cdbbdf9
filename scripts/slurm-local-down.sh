#!/usr/bin/env bash
# slurm-local-down.sh: stop the cluster started by slurm-local-up.sh and remove its files.
# Cancels the jobs still queued, then stops each daemon by the pid in its pid file (munged only
# if slurm-local-up.sh started it). The packages stay installed.
set -uo pipefail

BASE=${FLORENZ_SLURM_BASE:-/tmp/florenz-slurm}

stop_pidfile() {  # name pidfile
    local name=$1 pidfile=$2 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for _ in $(seq 150); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            echo "$name: pid $pid ignored SIGTERM, sending SIGKILL"
            kill -KILL "$pid"
        fi
        echo "slurm-local-down: stopped $name (pid $pid)"
    fi
    rm -f "$pidfile"
}

if [ -f "$BASE/run/slurmctld.pid" ] && kill -0 "$(cat "$BASE/run/slurmctld.pid")" 2>/dev/null; then
    jobs=$(squeue -h -t pending,running -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086
        scancel $jobs
        for _ in $(seq 50); do
            [ -z "$(squeue -h -t pending,running -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
fi

stop_pidfile slurmd "$BASE/run/slurmd.pid"
stop_pidfile slurmctld "$BASE/run/slurmctld.pid"
if [ -f "$BASE/run/munged.ours" ]; then
    stop_pidfile munged /run/munge/munged.pid
fi

if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$BASE/etc/slurm.conf" ]; then
    rm -f /etc/slurm/slurm.conf
fi
if [ -e /etc/slurm/slurm.conf.before-florenz ] && [ ! -e /etc/slurm/slurm.conf ]; then
    mv /etc/slurm/slurm.conf.before-florenz /etc/slurm/slurm.conf
fi
rm -rf "$BASE"
echo "slurm-local-down: done"
