#!/usr/bin/env bash
# A single-node Slurm on this machine, for the tests of `--executor slurm` (tests/test_slurm.py).
#
# As root on Debian/Ubuntu: installs slurm-wlm, slurmdbd, munge and mariadb-server if missing, writes
# slurm.conf and slurmdbd.conf (one node: this host with its real CPUs and memory, one partition `debug`,
# accounting in MariaDB so `sacct` lists every job and requeue, an account `rlntp` for root and an account
# check), starts munged, mariadbd, slurmdbd, slurmctld and slurmd, and waits until `sinfo` shows the node idle.
# Idempotent: a running cluster is left as it is. Exits non-zero with one line if anything fails; `.ci/run`
# tolerates that (the Slurm tests then skip, saying why).
#
#   scripts/slurm_local.sh          install if needed, configure, start
#   scripts/slurm_local.sh stop     stop the daemons it started
set -euo pipefail
STATE=${RLNTP_SLURM_DIR:-/var/lib/rlntp-slurm}
CONF=/etc/slurm/slurm.conf
log() { echo "slurm_local: $*"; }
fail() { echo "slurm_local: $*" >&2; exit 1; }

stop() {
    for name in slurmd slurmctld slurmdbd; do
        [ -f "$STATE/$name.pid" ] && kill "$(cat "$STATE/$name.pid")" 2>/dev/null || true
    done
}
if [ "${1:-}" = stop ]; then stop; exit 0; fi

[ "$(id -u)" = 0 ] || fail "needs root (apt-get, daemons)"
# up: a node answers and the accounting database does too (the tests read sacct); a daemon lost since (MariaDB
# killed with the process group that started it) is started again below
if timeout 10 sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)' && timeout 10 sacct -n -X >/dev/null 2>&1
then
    log "already running: $(sinfo -h -o '%P %D %T %c CPUs')"; exit 0
fi
start=$(date +%s)
if ! command -v slurmctld >/dev/null || ! command -v slurmdbd >/dev/null || ! command -v mariadbd >/dev/null; then
    command -v apt-get >/dev/null || fail "no apt-get: install Slurm by hand"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || fail "apt-get update failed"
    apt-get install -y -qq slurm-wlm slurmdbd munge mariadb-server >/dev/null 2>&1 || fail "apt-get install failed"
fi
mkdir -p "$STATE"/{spool,slurmd,log} /etc/slurm /run/munge /var/log/munge /run/mysqld
host=$(hostname -s)
cpus=$(nproc)
mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))

# munge: a key, the daemon as the munge user
[ -s /etc/munge/munge.key ] || { dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 2>/dev/null; }
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || fail "munged did not start"

# MariaDB and slurmdbd: accounting, so sacct lists jobs and their requeues
chown mysql:mysql /run/mysqld
if ! pgrep -x mariadbd >/dev/null; then
    # in a session of its own: it outlives the shell (and the process group) that starts it
    (setsid mariadbd --user=mysql --skip-networking=0 --bind-address=127.0.0.1 >"$STATE/log/mariadb.log" 2>&1 &)
    for _ in $(seq 60); do mariadb -e 'select 1' >/dev/null 2>&1 && break; sleep 0.5; done
fi
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db; CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
            GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;" || fail "MariaDB did not start"
cat >/etc/slurm/slurmdbd.conf <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
PidFile=$STATE/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
EOF
chmod 600 /etc/slurm/slurmdbd.conf

cat >"$CONF" <<EOF
ClusterName=rlntp
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/spool
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
JobRequeue=1
KillWait=2
MinJobAge=600
MessageTimeout=5
AuthInfo=cred_expire=10
SchedulerParameters=sched_interval=2,bf_interval=2
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/none
MaxArraySize=10001
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
ln -sf "$CONF" /etc/slurm-llnl.conf 2>/dev/null || true

if pgrep -x slurmdbd >/dev/null && ! timeout 10 sacctmgr -n list cluster >/dev/null 2>&1; then
    kill "$(pgrep -x slurmdbd)"  # it lost its database: a new one connects at once
    for _ in $(seq 20); do pgrep -x slurmdbd >/dev/null || break; sleep 0.5; done
fi
pgrep -x slurmdbd >/dev/null || slurmdbd || fail "slurmdbd did not start (see $STATE/log/slurmdbd.log)"
for _ in $(seq 60); do sacctmgr -n list cluster >/dev/null 2>&1 && break; sleep 0.5; done
sacctmgr -i add cluster rlntp >/dev/null 2>&1 || true
sacctmgr -i add account rlntp Cluster=rlntp >/dev/null 2>&1 || true
sacctmgr -i add user root Account=rlntp DefaultAccount=rlntp >/dev/null 2>&1 || true
pgrep -x slurmctld >/dev/null || slurmctld || fail "slurmctld did not start (see $STATE/log/slurmctld.log)"
pgrep -x slurmd >/dev/null || slurmd || fail "slurmd did not start (see $STATE/log/slurmd.log)"
for _ in $(seq 60); do
    if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed)'; then
        log "up in $(( $(date +%s) - start )) s: $(sinfo -h -o '%P %D %T %c CPUs %m MB')"; exit 0
    fi
    sleep 0.5
done
fail "the node did not become idle within 30 s: $(sinfo -h 2>&1 | head -1)"
