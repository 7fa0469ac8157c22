#!/usr/bin/env bash
# NØMADE lab stack: a real multi-node SLURM cluster (munge, MariaDB, slurmdbd, slurmctld, several slurmd),
# Prometheus, the NØMADE exporter and the NØMADE analytics service on one Debian 12 host, all on loopback.
#
# Usage: deploy/lab/lab.sh install|start|stop|reset|status|workload|workload-ml [N]
#
#   install   apt packages, only when their binaries are missing (NOMADE_LAB_FORCE_INSTALL=1: always)
#   start     start everything (idempotent: what already runs is left alone)
#   stop      stop everything the lab started (also half-started stacks; never fails on what is stopped)
#   reset     stop, then wipe the lab state (SLURM state, accounting DB, Prometheus TSDB, exporter state)
#   status    what runs
#   workload  submit the known workload (deploy/lab/workload.sh), wait for every final state and write
#             $LAB/workload.json
#   workload-ml [N]  submit a stream of N (default 60) short jobs with designed failure modes for the risk
#             models (deploy/lab/workload_ml.sh; adds user carol, account biology), wait for every final
#             state and write $LAB/workload_ml.json
#
# Root required. State lives under $NOMADE_LAB_DIR (default /var/lib/nomade-lab). The recipe this follows
# (order of start, multi-slurmd settings) is ../shared/recipes/LAB.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
LAB="${NOMADE_LAB_DIR:-/var/lib/nomade-lab}"
HOST="$(hostname -s)"
NODES=(c01 c02 c03 c04 gpu01)   # ghost01 is defined in slurm.conf but never gets a slurmd
DBPORT=3307
PROM_ADDR=127.0.0.1:9090
EXPORTER_ADDR=127.0.0.1:9866
ANALYTICS_ADDR=127.0.0.1:9867
AM_ADDR=127.0.0.1:9093
export SLURM_CONF="$LAB/etc/slurm.conf"
export LC_ALL=C

# nodejs/npm: the dashboard tests turn Grafana's published schema (@grafana/schema, npm) into JSON Schema.
# ShellCheck is installed because the tests lint the SLURM prolog/epilog hooks (deploy/slurm/).
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server sysstat prometheus prometheus-alertmanager
          victoria-metrics curl python3 nodejs npm shellcheck)
BINARIES=(/usr/sbin/slurmctld /usr/sbin/slurmd /usr/sbin/slurmdbd /usr/sbin/munged /usr/bin/mysqld_safe
          /usr/bin/mariadb-install-db /usr/bin/prometheus /usr/bin/prometheus-alertmanager
          /usr/bin/victoria-metrics /usr/lib/sysstat/sadc /usr/bin/curl /usr/bin/python3 /usr/bin/node /usr/bin/npm /usr/bin/shellcheck)

log() { printf '[lab %s] %s\n' "$(date +%T)" "$*"; }
warn() { printf '[lab %s] WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[lab %s] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

need_root() { [[ $EUID -eq 0 ]] || die "must run as root (it starts system daemons and creates users)"; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND every 0.5 s until it succeeds, or die.
wait_for() {
    local timeout=$1 what=$2
    shift 2
    local deadline=$((SECONDS + timeout))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
    log "$what: ready"
}

# pid_alive PIDFILE [COMM]: the pid in PIDFILE runs (and its comm starts with COMM when given).
pid_alive() {
    local f=$1 comm=${2:-} pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    [[ -z $comm ]] || [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$comm"* ]]
}

# stop_pidfile NAME PIDFILE [COMM]: TERM, wait up to 15 s, then KILL. Silent when not running.
stop_pidfile() {
    local name=$1 f=$2 comm=${3:-} pid i
    if ! pid_alive "$f" "$comm"; then
        rm -f "$f"
        return 0
    fi
    pid=$(<"$f")
    log "stopping $name (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.5
    done
    if kill -0 "$pid" 2>/dev/null; then
        warn "$name (pid $pid) ignored SIGTERM; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

render() {  # render TEMPLATE DEST: substitute @HOST@ @LAB@ @DBPORT@ @DBPASS@
    local dbpass=""
    [[ -s $LAB/etc/dbpass ]] && dbpass=$(<"$LAB/etc/dbpass")
    sed -e "s|@HOST@|$HOST|g" -e "s|@LAB@|$LAB|g" -e "s|@DBPORT@|$DBPORT|g" -e "s|@DBPASS@|$dbpass|g" \
        "$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}

# ---------------------------------------------------------------------------------------------- install
cmd_install() {
    need_root
    local missing=() b
    for b in "${BINARIES[@]}"; do [[ -x $b ]] || missing+=("$b"); done
    if ((${#missing[@]} == 0)) && [[ ${NOMADE_LAB_FORCE_INSTALL:-0} != 1 ]]; then
        log "install: every package is already installed"
        return 0
    fi
    log "install: missing ${missing[*]}; installing ${PACKAGES[*]}"
    # The packages' maintainer scripts would start their services (system Prometheus on :9090, MariaDB, ...);
    # the lab runs its own instances, so service starts are refused while apt runs (policy-rc.d, exit 101).
    local policy=/usr/sbin/policy-rc.d ours=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        ours=1
    fi
    local rc=0
    {
        DEBIAN_FRONTEND=noninteractive apt-get update -q &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends --no-upgrade "${PACKAGES[@]}"
    } || rc=$?
    ((ours)) && rm -f "$policy"
    ((rc == 0)) || die "apt-get failed (exit $rc)"
    log "install: done"
}

check_installed() {
    local b
    for b in "${BINARIES[@]}"; do
        [[ -x $b ]] || die "$b is missing: run '$0 install' first"
    done
}

# host_on_loopback: make this host's name resolve to 127.0.0.1 first. With NoInAddrAny and NoCtldInAddrAny
# (slurm.conf.in) slurmctld, slurmd and srun bind to the address their host's NAME resolves to, while they reach each
# other at SlurmctldHost's and NodeAddr's 127.0.0.1, from source address 127.0.0.1: a name mapped to Debian's and
# Ubuntu's 127.0.1.1 (/etc/hosts of a standard install) leaves slurmctld unreachable and srun steps unable to
# connect back; a name that does not resolve (a minimal image) stops slurmctld. The lab is for a spare machine: it
# adds one marked first line to /etc/hosts when the name does not already resolve to 127.0.0.1.
host_on_loopback() {
    local addr
    addr=$(getent ahostsv4 "$HOST" 2>/dev/null | awk 'NR == 1 { print $1 }')
    [[ $addr == 127.0.0.1 ]] && return 0
    log "$HOST resolves to ${addr:-nothing}, not 127.0.0.1: adding '127.0.0.1 $HOST' as the first line of /etc/hosts"
    sed -i "1i 127.0.0.1\t$HOST\t# added by the NOMADE lab (deploy/lab/lab.sh host_on_loopback)" /etc/hosts
    addr=$(getent ahostsv4 "$HOST" 2>/dev/null | awk 'NR == 1 { print $1 }')
    [[ $addr == 127.0.0.1 ]] || die "$HOST still resolves to ${addr:-nothing} (see /etc/nsswitch.conf, /etc/gai.conf)"
}

# ---------------------------------------------------------------------------------------------- configs
prepare() {
    mkdir -p "$LAB"/{etc,run,log,slurmctld,slurmd,mysql,mysql-run,prometheus,exporter,jobs,dev}
    chmod 755 "$LAB" "$LAB/etc" "$LAB/run" "$LAB/log"
    chmod 1777 "$LAB/jobs"   # job output files of alice and bob
    chown slurm:slurm "$LAB/slurmctld" "$LAB/run" "$LAB/log"
    # Daemons that drop privileges write their own log file: create it with their owner.
    touch "$LAB/log/mysqld.log" "$LAB/log/slurmctld.log" "$LAB/log/slurmdbd.log"
    chown mysql:mysql "$LAB/log/mysqld.log"
    chown slurm:slurm "$LAB/log/slurmctld.log" "$LAB/log/slurmdbd.log"
    chown mysql:mysql "$LAB/mysql" "$LAB/mysql-run"
    chown prometheus:prometheus "$LAB/prometheus"
    if [[ ! -s $LAB/etc/dbpass ]]; then
        (umask 077 && head -c 24 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' >"$LAB/etc/dbpass")
    fi
    chmod 600 "$LAB/etc/dbpass"
    host_on_loopback
    render "$HERE/slurm.conf.in" "$LAB/etc/slurm.conf"
    cp "$HERE/cgroup.conf" "$LAB/etc/"
    render "$HERE/gres.conf.in" "$LAB/etc/gres.conf"
    # SLURM 22.05 drops a GPU without File= ("Removing file-less GPU") and then drains gpu01 with "gres/gpu
    # count reported lower than configured": give it two stand-in device nodes (NVIDIA's major number 195).
    # Nothing opens them; without ConstrainDevices they only name the GPUs (CUDA_VISIBLE_DEVICES).
    local i
    for i in 0 1; do
        [[ -c $LAB/dev/nvidia$i ]] || mknod "$LAB/dev/nvidia$i" c 195 "$i" ||
            die "mknod $LAB/dev/nvidia$i failed: gpu01 cannot get its two GPUs"
    done
    render "$HERE/slurmdbd.conf.in" "$LAB/etc/slurmdbd.conf"
    chown slurm:slurm "$LAB/etc/slurmdbd.conf"
    chmod 600 "$LAB/etc/slurmdbd.conf"
    render "$HERE/my.cnf.in" "$LAB/etc/my.cnf"
    render "$HERE/prometheus.yml.in" "$LAB/etc/prometheus.yml"
    build_monitoring
    # The analytics service reads deploy/lab/analytics.toml (the watches, also read by the integration tests)
    # followed by the rendered [analytics.risk] section (paths under $LAB, node_map to this host's name).
    render "$HERE/analytics-risk.toml.in" "$LAB/etc/analytics-risk.toml"
    cat "$HERE/analytics.toml" "$LAB/etc/analytics-risk.toml" >"$LAB/etc/analytics.toml.tmp"
    mv "$LAB/etc/analytics.toml.tmp" "$LAB/etc/analytics.toml"
    rm -f "$LAB/etc/analytics-risk.toml"
    mkdir -p "$LAB/analytics"
    chmod 700 "$LAB/analytics"
    chmod 644 "$LAB/etc/slurm.conf" "$LAB/etc/cgroup.conf" "$LAB/etc/gres.conf" "$LAB/etc/my.cnf" \
        "$LAB/etc/prometheus.yml" "$LAB/etc/analytics.toml"
    # Client commands (sinfo, sacct, the exporter run by others) read /etc/slurm/slurm.conf unless SLURM_CONF
    # is set: point it at the lab's file, but never replace a real configuration.
    mkdir -p /etc/slurm
    if [[ -L /etc/slurm/slurm.conf || ! -e /etc/slurm/slurm.conf ]]; then
        ln -sfn "$LAB/etc/slurm.conf" /etc/slurm/slurm.conf
    elif ! cmp -s /etc/slurm/slurm.conf "$LAB/etc/slurm.conf"; then
        warn "/etc/slurm/slurm.conf is not the lab's; client commands need SLURM_CONF=$LAB/etc/slurm.conf"
    fi
}

# ---------------------------------------------------------------------------------------------- services
munge_ok() { munge -n 2>/dev/null | unmunge >/dev/null 2>&1; }

start_munge() {
    if munge_ok; then
        log "munged: already running"
        return 0
    fi
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "munged: creating /etc/munge/munge.key"
        mkdir -p /etc/munge
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge /etc/munge/munge.key
    chmod 700 /etc/munge
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/lib/munge /var/log/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge
    chmod 755 /run/munge
    runuser -u munge -- /usr/sbin/munged
    touch "$LAB/run/munged.ours"   # stop only the munged that the lab started
    wait_for 20 munged munge_ok || die "munged did not answer (see /var/log/munge/munged.log)"
}

mysql_ok() { mysqladmin --defaults-file="$LAB/etc/my.cnf" --connect-timeout=2 ping; }

start_mysql() {
    if mysql_ok >/dev/null 2>&1; then
        log "mysqld: already running"
    else
        if [[ ! -d $LAB/mysql/mysql ]]; then
            log "mysqld: initialising $LAB/mysql"
            mariadb-install-db --defaults-file="$LAB/etc/my.cnf" --user=mysql --skip-test-db \
                >>"$LAB/log/mariadb-install-db.log" 2>&1 ||
                die "mariadb-install-db failed (see $LAB/log/mariadb-install-db.log)"
        fi
        setsid mysqld_safe --defaults-file="$LAB/etc/my.cnf" >>"$LAB/log/mysqld_safe.log" 2>&1 </dev/null &
        wait_for 60 mysqld mysql_ok || die "mysqld did not answer within 60 s (see $LAB/log/mysqld.log)"
    fi
    local pass
    pass=$(<"$LAB/etc/dbpass")
    mariadb --defaults-file="$LAB/etc/my.cnf" -u root <<SQL || die "could not create the slurm DB user"
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$pass';
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$pass';
ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
FLUSH PRIVILEGES;
SQL
}

sacctmgr_ok() { timeout 10 sacctmgr -n -P show cluster format=cluster; }

start_slurmdbd() {
    if pid_alive "$LAB/run/slurmdbd.pid" slurmdbd; then
        log "slurmdbd: already running"
    else
        slurmdbd || die "slurmdbd failed to start (see $LAB/log/slurmdbd.log)"
        wait_for 60 slurmdbd sacctmgr_ok || die "slurmdbd did not answer within 60 s (see $LAB/log/slurmdbd.log)"
    fi
    if ! sacctmgr -n -P show cluster format=cluster | grep -qx lab; then
        sacctmgr -i add cluster lab >/dev/null || die "sacctmgr add cluster lab failed"
        log "sacctmgr: cluster lab added"
    fi
}

ctld_ok() { timeout 10 scontrol ping | grep -q 'is UP'; }

start_slurmctld() {
    if pid_alive "$LAB/run/slurmctld.pid" slurmctld; then
        log "slurmctld: already running"
        return 0
    fi
    slurmctld || die "slurmctld failed to start (see $LAB/log/slurmctld.log)"
    wait_for 60 slurmctld ctld_ok || die "slurmctld did not answer within 60 s (see $LAB/log/slurmctld.log)"
}

# node_up NODE: the node registered (no '*' = not responding, not unknown/down).
node_up() {
    local st
    st=$(sinfo -h -N -n "$1" -o %t 2>/dev/null | head -n1)
    [[ -n $st && $st != *'*' && $st != unk* && $st != down* ]]
}

start_slurmd() {  # start_slurmd NODE
    local n=$1
    if pid_alive "$LAB/run/slurmd-$n.pid" slurmd; then
        log "slurmd $n: already running"
        return 0
    fi
    mkdir -p "$LAB/slurmd/$n"
    slurmd -N "$n" || die "slurmd -N $n failed to start (see $LAB/log/slurmd-$n.log)"
}

start_slurmds() {
    local n
    for n in "${NODES[@]}"; do start_slurmd "$n"; done
    for n in "${NODES[@]}"; do
        wait_for 60 "node $n" node_up "$n" || die "node $n did not register within 60 s (see $LAB/log/slurmd-$n.log)"
    done
    # A node that never registered since slurmctld started stays "unk*" for ever (ping_nodes() only downs
    # nodes that answered once), so ghost01 is marked down by hand, with the reason slurmctld gives lost nodes.
    if [[ $(sinfo -h -N -n ghost01 -o %t | head -n1) != down* ]]; then
        scontrol update nodename=ghost01 state=down reason="Not responding"
        log "ghost01: marked down (it never gets a slurmd)"
    fi
}

ensure_user() {  # ensure_user USER ACCOUNT: the Unix user, the SLURM account and their association
    local user=$1 account=$2
    id -u "$user" >/dev/null 2>&1 || { useradd -m -s /bin/bash "$user" && log "user $user created"; }
    if [[ -z $(sacctmgr -n -P show account "$account" format=account) ]]; then
        sacctmgr -i add account "$account" Cluster=lab Description="$account" Organization=lab >/dev/null
        log "sacctmgr: account $account added"
    fi
    if [[ -z $(sacctmgr -n -P show assoc where user="$user" account="$account" format=user) ]]; then
        sacctmgr -i add user "$user" Account="$account" Cluster=lab >/dev/null
        log "sacctmgr: user $user (account $account) added"
    fi
}

# alice and bob are the users of the known workload; carol (account biology) is added by `workload-ml` only, so
# the counts the other integration tests assert (users, associations) stay those of the known workload.
ensure_users() {
    ensure_user alice physics
    ensure_user bob chemistry
}

prom_ok() { curl -sf --max-time 2 "http://$PROM_ADDR/-/ready"; }
am_ok() { curl -sf --max-time 2 "http://$AM_ADDR/-/ready"; }

# The rules and the Alertmanager configuration the lab runs are the ones `nomade build` generates from the default
# monitoring configuration: Prometheus loads $LAB/build/prometheus/nomade-rules.yml (prometheus.yml.in), the lab's
# Alertmanager runs $LAB/build/alertmanager/alertmanager.yml (default receiver without integrations).
build_monitoring() {
    rm -rf "$LAB/build"
    if [[ -x $ROOT/.venv/bin/nomade ]] && "$ROOT/.venv/bin/nomade" build --out "$LAB/build" >>"$LAB/log/build.log" 2>&1; then
        chmod -R a+rX "$LAB/build"
    else
        warn "nomade build failed or no venv (see $LAB/log/build.log): Prometheus runs without the NØMADE rules"
    fi
}

start_alertmanager() {
    local conf="$LAB/build/alertmanager/alertmanager.yml"
    if pid_alive "$LAB/run/alertmanager.pid"; then
        kill -HUP "$(<"$LAB/run/alertmanager.pid")" 2>/dev/null || true
        log "alertmanager: already running (configuration reloaded)"
        return 0
    fi
    [[ -f $conf ]] || { warn "alertmanager: $conf missing (nomade build failed); not started"; return 0; }
    if am_ok >/dev/null 2>&1; then
        die "something else answers on $AM_ADDR (a system Alertmanager?); stop it first"
    fi
    mkdir -p "$LAB/alertmanager"
    chown prometheus:prometheus "$LAB/alertmanager"
    # --cluster.listen-address= (empty): a single instance, no gossip port.
    setsid setpriv --reuid=prometheus --regid=prometheus --init-groups -- /usr/bin/prometheus-alertmanager \
        --config.file="$conf" --storage.path="$LAB/alertmanager" --web.listen-address="$AM_ADDR" \
        --cluster.listen-address= >>"$LAB/log/alertmanager.log" 2>&1 </dev/null &
    echo $! >"$LAB/run/alertmanager.pid"
    wait_for 30 alertmanager am_ok || die "alertmanager did not get ready within 30 s (see $LAB/log/alertmanager.log)"
}

start_prometheus() {
    if pid_alive "$LAB/run/prometheus.pid" prometheus; then
        # prepare() may have rendered a newer prometheus.yml (a new scrape job): SIGHUP makes Prometheus reload it.
        kill -HUP "$(<"$LAB/run/prometheus.pid")" 2>/dev/null || true
        log "prometheus: already running (configuration reloaded)"
        return 0
    fi
    if prom_ok >/dev/null 2>&1; then
        die "something else answers on $PROM_ADDR (a system Prometheus?); stop it first"
    fi
    setsid setpriv --reuid=prometheus --regid=prometheus --init-groups -- /usr/bin/prometheus \
        --config.file="$LAB/etc/prometheus.yml" --storage.tsdb.path="$LAB/prometheus" \
        --web.listen-address="$PROM_ADDR" --storage.tsdb.retention.time=2d \
        >>"$LAB/log/prometheus.log" 2>&1 </dev/null &
    echo $! >"$LAB/run/prometheus.pid"
    wait_for 60 prometheus prom_ok || die "prometheus did not get ready within 60 s (see $LAB/log/prometheus.log)"
}

exporter_ok() { curl -sf --max-time 25 -o /dev/null "http://$EXPORTER_ADDR/metrics"; }

# exporter_wait: true once /metrics answers; false when the process died (no point waiting) or after 40 s.
exporter_wait() {
    local deadline=$((SECONDS + 40))
    while ((SECONDS < deadline)); do
        exporter_ok >/dev/null 2>&1 && { log "exporter: ready"; return 0; }
        pid_alive "$LAB/run/exporter.pid" || return 1
        sleep 0.5
    done
    return 1
}

start_exporter() {
    local bin="$ROOT/.venv/bin/nomade-exporter"
    if pid_alive "$LAB/run/exporter.pid"; then
        log "exporter: already running"
        return 0
    fi
    if [[ ! -x $bin ]]; then
        warn "exporter: $bin not found (no venv); Prometheus will show job=nomade down"
        return 0
    fi
    setsid "$bin" --mode all --web.listen-address "$EXPORTER_ADDR" --state.dir "$LAB/exporter" \
        --command.cache-ttl 4 --scrape.timeout 20 --config "$HERE/exporter.toml" \
        >>"$LAB/log/exporter.log" 2>&1 </dev/null &
    echo $! >"$LAB/run/exporter.pid"
    if ! exporter_wait; then
        warn "exporter did not answer on $EXPORTER_ADDR (exited or 40 s passed); the rest of the lab runs." \
            "Last lines of $LAB/log/exporter.log:"
        tail -n 20 "$LAB/log/exporter.log" >&2 || true
        pid_alive "$LAB/run/exporter.pid" || rm -f "$LAB/run/exporter.pid"
    fi
}

analytics_ok() { curl -sf --max-time 5 -o /dev/null "http://$ANALYTICS_ADDR/metrics"; }

# analytics_wait: true once /metrics answers; false when the process died or after 30 s.
analytics_wait() {
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        analytics_ok >/dev/null 2>&1 && { log "analytics: ready"; return 0; }
        pid_alive "$LAB/run/analytics.pid" || return 1
        sleep 0.5
    done
    return 1
}

# The analytics service reads history from the lab's Prometheus and serves nomade_trend_* metrics for it to scrape
# (job nomade-analytics). deploy/lab/analytics.toml shortens the default watches' windows to fit a young lab.
start_analytics() {
    local cmd
    if pid_alive "$LAB/run/analytics.pid"; then
        log "analytics: already running"
        return 0
    fi
    if [[ -x $ROOT/.venv/bin/nomade-analytics ]]; then
        cmd=("$ROOT/.venv/bin/nomade-analytics")
    elif [[ -x $ROOT/.venv/bin/python ]]; then
        cmd=("$ROOT/.venv/bin/python" -m nomade.analytics.cli)
    else
        warn "analytics: $ROOT/.venv not found (no venv); Prometheus will show job=nomade-analytics down"
        return 0
    fi
    setsid "${cmd[@]}" --config "$LAB/etc/analytics.toml" --prometheus.url "http://$PROM_ADDR" \
        --web.listen-address "$ANALYTICS_ADDR" --interval 15s \
        >>"$LAB/log/analytics.log" 2>&1 </dev/null &
    echo $! >"$LAB/run/analytics.pid"
    if ! analytics_wait; then
        warn "analytics did not answer on $ANALYTICS_ADDR (exited or 30 s passed); the rest of the lab runs." \
            "Last lines of $LAB/log/analytics.log:"
        tail -n 20 "$LAB/log/analytics.log" >&2 || true
        pid_alive "$LAB/run/analytics.pid" || rm -f "$LAB/run/analytics.pid"
    fi
}

cmd_start() {
    need_root
    check_installed
    local t0=$SECONDS
    prepare
    start_munge
    start_mysql
    start_slurmdbd
    start_slurmctld
    start_slurmds
    ensure_users
    start_alertmanager
    start_prometheus
    start_exporter
    start_analytics
    log "start: lab up in $((SECONDS - t0)) s (state in $LAB; SLURM_CONF=$SLURM_CONF)"
}

# ---------------------------------------------------------------------------------------------- stop
stop_mysql() {
    local f="$LAB/mysql-run/mysqld.pid" pid i
    if pid_alive "$f"; then
        pid=$(<"$f")
        log "stopping mysqld (pid $pid)"
        mysqladmin --defaults-file="$LAB/etc/my.cnf" shutdown >/dev/null 2>&1 || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 60; i++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2>/dev/null && { warn "mysqld still runs; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    # mysqld_safe exits once mysqld ended cleanly; give it a moment.
    sleep 0.5
}

cmd_stop() {
    need_root
    local n
    stop_pidfile analytics "$LAB/run/analytics.pid"
    stop_pidfile exporter "$LAB/run/exporter.pid"
    stop_pidfile prometheus "$LAB/run/prometheus.pid" prometheus
    stop_pidfile alertmanager "$LAB/run/alertmanager.pid" prometheus-aler
    # SIGTERM to every slurmd at once (each takes a second or two to exit), then wait for each.
    for n in "${NODES[@]}"; do
        if pid_alive "$LAB/run/slurmd-$n.pid" slurmd; then
            log "stopping slurmd $n (pid $(<"$LAB/run/slurmd-$n.pid"))"
            kill -TERM "$(<"$LAB/run/slurmd-$n.pid")" 2>/dev/null || true
        fi
    done
    for n in "${NODES[@]}"; do stop_pidfile "slurmd $n" "$LAB/run/slurmd-$n.pid" slurmd; done
    stop_pidfile slurmctld "$LAB/run/slurmctld.pid" slurmctld
    stop_pidfile slurmdbd "$LAB/run/slurmdbd.pid" slurmdbd
    stop_mysql
    if [[ -e $LAB/run/munged.ours ]]; then
        stop_pidfile munged /run/munge/munged.pid munged
        rm -f "$LAB/run/munged.ours"
    fi
    log "stop: done"
}

# ---------------------------------------------------------------------------------------------- reset
cmd_reset() {
    need_root
    case "$LAB" in
        /var/lib/nomade-lab | /tmp/* | /var/lib/nomade-lab-*) ;;
        *) die "refusing to wipe $LAB (only /var/lib/nomade-lab*, /tmp/*)" ;;
    esac
    # End the jobs first so that no slurmstepd outlives its slurmd.
    if ctld_ok >/dev/null 2>&1; then
        local ids
        ids=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
        if [[ -n ${ids// /} ]]; then
            log "reset: cancelling jobs $ids"
            # shellcheck disable=SC2086
            scancel $ids 2>/dev/null || true
            # shellcheck disable=SC2016  # $(squeue ...) must expand in the inner bash, not here
            wait_for 60 "jobs gone" bash -c '[[ -z $(squeue -h -o %i) ]]' || warn "some jobs still listed"
        fi
    fi
    cmd_stop
    log "reset: wiping $LAB"
    rm -rf "$LAB"
    [[ -L /etc/slurm/slurm.conf ]] && rm -f /etc/slurm/slurm.conf
    # Empty job cgroups left by killed daemons would collide with the job ids that restart at 1 (with several
    # slurmd per host, cgroup/v1 names each one's tree slurm_<node>). rmdir only removes empty cgroups.
    local d
    for d in /sys/fs/cgroup/*/slurm /sys/fs/cgroup/*/slurm_*; do
        if [[ -d $d ]]; then find "$d" -depth -mindepth 1 -type d -exec rmdir {} + 2>/dev/null || true; fi
    done
    log "reset: done"
}

# ---------------------------------------------------------------------------------------------- status
cmd_status() {
    local n
    show() { printf '  %-12s %s\n' "$1" "$2"; }
    state() { if pid_alive "$1" "${2:-}"; then echo "running (pid $(<"$1"))"; else echo "stopped"; fi; }
    echo "lab state: $LAB"
    if munge_ok; then show munged running; else show munged stopped; fi
    show mysqld "$(state "$LAB/mysql-run/mysqld.pid")"
    show slurmdbd "$(state "$LAB/run/slurmdbd.pid" slurmdbd)"
    show slurmctld "$(state "$LAB/run/slurmctld.pid" slurmctld)"
    for n in "${NODES[@]}"; do show "slurmd $n" "$(state "$LAB/run/slurmd-$n.pid" slurmd)"; done
    show prometheus "$(state "$LAB/run/prometheus.pid" prometheus)"
    show alertmanager "$(state "$LAB/run/alertmanager.pid" prometheus-aler)"
    show exporter "$(state "$LAB/run/exporter.pid")"
    show analytics "$(state "$LAB/run/analytics.pid")"
    if ctld_ok >/dev/null 2>&1; then
        echo "sinfo:"
        sinfo -N -o '%N %P %t %E' | sed 's/^/  /'
        echo "squeue:"
        squeue -o '%i %u %P %T %r %j' | sed 's/^/  /'
    fi
    if prom_ok >/dev/null 2>&1; then
        echo "prometheus targets:"
        curl -sf --max-time 5 "http://$PROM_ADDR/api/v1/targets" |
            /usr/bin/python3 -c 'import json,sys
for t in json.load(sys.stdin)["data"]["activeTargets"]:
    print("  %s %s %s %s" % (t["labels"]["job"], t["scrapeUrl"], t["health"], t.get("lastError", "")))' || true
    fi
    [[ -f $LAB/workload.json ]] && echo "workload: $LAB/workload.json"
    [[ -f $LAB/workload_ml.json ]] && echo "workload-ml: $LAB/workload_ml.json"
    return 0
}

cmd_workload() {
    need_root
    ctld_ok >/dev/null 2>&1 || die "slurmctld is not running: '$0 start' first"
    NOMADE_LAB_DIR="$LAB" bash "$HERE/workload.sh"
}

cmd_workload_ml() {
    need_root
    ctld_ok >/dev/null 2>&1 || die "slurmctld is not running: '$0 start' first"
    ensure_user carol biology
    NOMADE_LAB_DIR="$LAB" bash "$HERE/workload_ml.sh" "$@"
}

usage() { sed -n '5,17p' "$0" | sed 's/^# \{0,1\}//'; }

case "${1:-}" in
    install) cmd_install ;;
    start) cmd_start ;;
    stop) cmd_stop ;;
    reset) cmd_reset ;;
    status) cmd_status ;;
    workload) cmd_workload ;;
    workload-ml) shift; cmd_workload_ml "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
esac
