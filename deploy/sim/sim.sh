#!/usr/bin/env bash
# NØMADE demo on a simulated SLURM cluster: days of simulated history backfilled into a fresh Prometheus, then
# Prometheus, Alertmanager, the simulated cluster's live exporter (`nomade sim serve`) and the analytics service,
# all on 127.0.0.1, as any user (root is needed only to apt-get missing Prometheus binaries).
#
# Usage: deploy/sim/sim.sh start|stop|status
#
#   start   fresh stack: nomade build, history backfill (promtool), Alertmanager, Prometheus, sim exporter, a
#           synchronous first analytics cycle that trains the risk model from the backfilled jobs, then the
#           analytics service; prints the URLs. A stack already running is left alone.
#   stop    stop what `start` started (pid files under the state dir, each checked against its command line)
#   status  each process and the URLs
#
# Environment:
#   NOMADE_SIM_DIR   state directory (default ${XDG_STATE_HOME:-$HOME/.local/state}/nomade-sim)
#   SEED             simulation seed (default 42)
#   DAYS             days of history (default 1; fractions allowed)
#   NOMADE_SIM_STEP  seconds between history samples (default 120: rate() over the rules' and dashboards' 5 m
#                    windows needs at least two points)
#   Generating history costs about 0.2 s of CPU per step (the real collectors reading the rendered sources of
#   ~250 running jobs), spread over one worker process per CPU (`nomade sim history --workers`), promtool
#   overlapping: see the README for measured times.
#   NOMADE_SIM_PROM_PORT (9190), NOMADE_SIM_AM_PORT (9193), NOMADE_SIM_EXPORTER_PORT (9196),
#   NOMADE_SIM_ANALYTICS_PORT (9197): ports on 127.0.0.1, away from the lab's 9090/9093/9866/9867
#   NOMADE_SIM_PYTHON_BIN  directory holding nomade and nomade-analytics (default: the checkout's .venv/bin)
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
DIR="${NOMADE_SIM_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/nomade-sim}"
SEED="${SEED:-42}"
DAYS="${DAYS:-1}"
STEP="${NOMADE_SIM_STEP:-120}"
PROM_ADDR="127.0.0.1:${NOMADE_SIM_PROM_PORT:-9190}"
AM_ADDR="127.0.0.1:${NOMADE_SIM_AM_PORT:-9193}"
EXPORTER_ADDR="127.0.0.1:${NOMADE_SIM_EXPORTER_PORT:-9196}"
ANALYTICS_ADDR="127.0.0.1:${NOMADE_SIM_ANALYTICS_PORT:-9197}"
BIN="${NOMADE_SIM_PYTHON_BIN:-$ROOT/.venv/bin}"
TRAIN_TIMEOUT="${NOMADE_SIM_TRAIN_TIMEOUT:-600}"
export LC_ALL=C

log() { printf '[sim %s] %s\n' "$(date +%T)" "$*"; }
warn() { printf '[sim %s] WARNING: %s\n' "$(date +%T)" "$*" >&2; }
die() { printf '[sim %s] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

# http_ok URL: the URL answers 2xx within 5 s.
http_ok() {
    if command -v curl >/dev/null 2>&1; then
        curl -sf --max-time 5 -o /dev/null "$1"
    else
        "$BIN/python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' "$1"
    fi
}

# port_busy HOST:PORT: something accepts TCP connections there (bash's /dev/tcp).
port_busy() {
    (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null
}

# ours PIDFILE: the pid in PIDFILE runs and its command line names this stack's state directory (so a recycled
# pid, or a process of another stack, is never taken for ours).
ours() {
    local f=$1 pid
    [[ -s $f ]] || return 1
    pid=$(<"$f")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$DIR"
}

# stop_pidfile NAME: TERM, wait up to 15 s, then KILL. Silent when not running.
stop_pidfile() {
    local name=$1 f="$DIR/run/$1.pid" pid i
    if ! ours "$f"; then
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

# wait_ready NAME SECONDS URL: poll URL until it answers; fail early when the process died.
wait_ready() {
    local name=$1 timeout=$2 url=$3 deadline
    deadline=$((SECONDS + timeout))
    until http_ok "$url" >/dev/null 2>&1; do
        if ! ours "$DIR/run/$name.pid"; then
            tail -n 20 "$DIR/log/$name.log" >&2 || true
            die "$name exited during start-up (see $DIR/log/$name.log)"
        fi
        ((SECONDS < deadline)) || die "$name did not answer on $url within $timeout s (see $DIR/log/$name.log)"
        sleep 0.5
    done
    log "$name: ready ($url)"
}

# launch NAME COMMAND...: start COMMAND detached, output to $DIR/log/NAME.log, pid to $DIR/run/NAME.pid.
launch() {
    local name=$1
    shift
    if command -v setsid >/dev/null 2>&1; then
        setsid "$@" >>"$DIR/log/$name.log" 2>&1 </dev/null &
    else
        "$@" >>"$DIR/log/$name.log" 2>&1 </dev/null &
    fi
    echo $! >"$DIR/run/$name.pid"
}

find_bin() {  # find_bin NAME...: the first NAME on PATH (or in /usr/bin), else nothing
    local b
    for b in "$@"; do
        if command -v "$b" >/dev/null 2>&1; then command -v "$b"; return 0; fi
        [[ -x /usr/bin/$b ]] && { echo "/usr/bin/$b"; return 0; }
    done
    return 0
}

is_debian() { [[ -r /etc/os-release ]] && grep -qiE '^(ID|ID_LIKE)=.*(debian|ubuntu)' /etc/os-release; }

# Prometheus, promtool and Alertmanager: installed with apt as root on Debian/Ubuntu (service starts refused while
# apt runs, so no system Prometheus appears on the lab's ports), else a one-line error saying what to install.
ensure_binaries() {
    PROMETHEUS=$(find_bin prometheus)
    PROMTOOL=$(find_bin promtool)
    ALERTMANAGER=$(find_bin prometheus-alertmanager alertmanager)
    if [[ -n $PROMETHEUS && -n $PROMTOOL && -n $ALERTMANAGER ]]; then
        return 0
    fi
    if [[ $EUID -eq 0 ]] && is_debian; then
        log "installing prometheus and prometheus-alertmanager (apt-get)"
        local policy=/usr/sbin/policy-rc.d mine=0 rc=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy"
            chmod 755 "$policy"
            mine=1
        fi
        {
            DEBIAN_FRONTEND=noninteractive apt-get update -q &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends prometheus prometheus-alertmanager
        } || rc=$?
        ((mine)) && rm -f "$policy"
        ((rc == 0)) || die "apt-get install prometheus prometheus-alertmanager failed (exit $rc)"
        PROMETHEUS=$(find_bin prometheus)
        PROMTOOL=$(find_bin promtool)
        ALERTMANAGER=$(find_bin prometheus-alertmanager alertmanager)
        [[ -n $PROMETHEUS && -n $PROMTOOL && -n $ALERTMANAGER ]] && return 0
    fi
    die "the demo needs prometheus, promtool and alertmanager on PATH: install Prometheus and Alertmanager" \
        "(Debian/Ubuntu: sudo apt-get install --no-install-recommends prometheus prometheus-alertmanager; else https://prometheus.io/download/)"
}

render() {  # render TEMPLATE DEST: substitute the @NAME@ placeholders
    sed -e "s|@DIR@|$DIR|g" -e "s|@PROM_ADDR@|$PROM_ADDR|g" -e "s|@AM_ADDR@|$AM_ADDR|g" \
        -e "s|@EXPORTER_ADDR@|$EXPORTER_ADDR|g" -e "s|@ANALYTICS_ADDR@|$ANALYTICS_ADDR|g" \
        -e "s|@PROM_URL@|http://$PROM_ADDR|g" -e "s|@HISTORY_SECONDS@|$HISTORY_SECONDS|g" "$1" >"$2.tmp"
    mv "$2.tmp" "$2"
}

start_prometheus() {
    # retention: the backfilled blocks must not be deleted as too old at start-up (15 days > the longest DAYS)
    launch prometheus "$PROMETHEUS" --config.file="$DIR/etc/prometheus.yml" --storage.tsdb.path="$DIR/prometheus" \
        --web.listen-address="$PROM_ADDR" --storage.tsdb.retention.time=15d
    wait_ready prometheus 120 "http://$PROM_ADDR/-/ready"
}

running_any() {
    local n
    for n in alertmanager prometheus exporter analytics; do
        ours "$DIR/run/$n.pid" && return 0
    done
    return 1
}

cmd_start() {
    [[ -x $BIN/nomade && -x $BIN/nomade-analytics ]] ||
        die "$BIN/nomade not found: create the virtual environment first (make venv)"
    if running_any; then
        log "the simulated stack already runs under $DIR (stop it first for a fresh history)"
        cmd_status
        return 0
    fi
    ensure_binaries
    local addr
    for addr in "$PROM_ADDR" "$AM_ADDR" "$EXPORTER_ADDR" "$ANALYTICS_ADDR"; do
        if port_busy "$addr"; then
            die "something already answers on $addr (another demo or the lab?): stop it or choose other ports" \
                "(NOMADE_SIM_PROM_PORT, NOMADE_SIM_AM_PORT, NOMADE_SIM_EXPORTER_PORT, NOMADE_SIM_ANALYTICS_PORT)"
        fi
    done
    [[ $SEED =~ ^[0-9]+$ ]] || die "SEED must be a non-negative integer, got '$SEED'"
    HISTORY_SECONDS=$(awk -v d="$DAYS" 'BEGIN { if (d + 0 <= 0) exit 1; printf "%d", d * 86400 }') ||
        die "DAYS must be a positive number, got '$DAYS'"
    mkdir -p "$DIR"
    # a fresh stack: the backfilled TSDB, the simulation's state and the models belong to one history
    rm -rf "${DIR:?}/prometheus" "${DIR:?}/sim" "${DIR:?}/analytics" "${DIR:?}/alertmanager" "${DIR:?}/build" \
        "${DIR:?}/run" "${DIR:?}/log" "${DIR:?}/tmp"
    mkdir -p "$DIR"/{etc,run,log,tmp,prometheus,sim,analytics/models,alertmanager}
    # torch and torch_geometric write compiled kernels and generated modules under TMPDIR: keep them in the state
    # directory, which the next start wipes, instead of leaving them in /tmp
    export TMPDIR="$DIR/tmp"
    chmod 700 "$DIR/analytics"

    log "nomade build -> $DIR/build"
    "$BIN/nomade" build --out "$DIR/build" >"$DIR/log/build.log" 2>&1 || die "nomade build failed (see $DIR/log/build.log)"
    render "$HERE/prometheus.yml.in" "$DIR/etc/prometheus.yml"
    render "$HERE/analytics.toml.in" "$DIR/etc/analytics.toml"

    log "simulating $DAYS day(s) of history (seed $SEED, step $STEP s) and backfilling it (log: $DIR/log/history.log)"
    # The history ends 5 minutes ago: backfilled series carry no staleness markers, so a series that ends in the
    # history (a finished job, a node's previous state) stays visible to instant queries for Prometheus' lookback
    # delta (5 m) after its last sample. Ending the history that much before the live exporter's first scrape keeps
    # such ghosts out of the live view (two states for one node, finished jobs still listed as queued).
    local end=$(($(date +%s) - 300))
    PATH="$(dirname "$PROMTOOL"):$PATH" "$BIN/nomade" sim history --seed "$SEED" --days "$DAYS" --step "$STEP" \
        --end "$end" --tsdb "$DIR/prometheus" --state-dir "$DIR/sim" --instance "$EXPORTER_ADDR" \
        >"$DIR/log/history.log" 2>&1 || {
        tail -n 20 "$DIR/log/history.log" >&2 || true
        die "history backfill failed (see $DIR/log/history.log)"
    }
    log "$(tail -n 1 "$DIR/log/history.log")"

    launch alertmanager "$ALERTMANAGER" --config.file="$DIR/build/alertmanager/alertmanager.yml" \
        --storage.path="$DIR/alertmanager" --web.listen-address="$AM_ADDR" --cluster.listen-address=
    wait_ready alertmanager 30 "http://$AM_ADDR/-/ready"
    start_prometheus
    # Recording rules start at Prometheus' first evaluation: their history is computed from the backfilled samples
    # by promtool, through this Prometheus, and its blocks moved into the TSDB. Prometheus would load them at its
    # next block reload (up to a minute); restarting it now, before the exporter runs, loads them at once.
    log "backfilling the recording rules over the history (log: $DIR/log/rules.log)"
    if PATH="$(dirname "$PROMTOOL"):$PATH" "$BIN/nomade" sim rules --state-dir "$DIR/sim" --url "http://$PROM_ADDR" \
        --tsdb "$DIR/prometheus" "$DIR/build/prometheus/nomade-rules.yml" >"$DIR/log/rules.log" 2>&1; then
        log "$(tail -n 1 "$DIR/log/rules.log")"
        stop_pidfile prometheus
        start_prometheus
    else
        warn "recording-rule history failed (see $DIR/log/rules.log): those series start now"
    fi
    launch exporter "$BIN/nomade" sim serve --state-dir "$DIR/sim" --web.listen-address "$EXPORTER_ADDR"
    wait_ready exporter 300 "http://$EXPORTER_ADDR/metrics"
    wait_scraped

    log "training the risk models from the backfilled jobs (first analytics cycle; log: $DIR/log/train.log)"
    if ! timeout "$TRAIN_TIMEOUT" "$BIN/nomade-analytics" --config "$DIR/etc/analytics.toml" --once \
        >"$DIR/log/train.out" 2>"$DIR/log/train.log"; then
        warn "the first analytics cycle failed or timed out after $TRAIN_TIMEOUT s (see $DIR/log/train.log);" \
            "the service retries training on its own"
    fi
    launch analytics "$BIN/nomade-analytics" --config "$DIR/etc/analytics.toml"
    wait_ready analytics 60 "http://$ANALYTICS_ADDR/metrics"
    # `nomade status` right after start should show trends and risk scores: wait for their first scrape
    wait_query 60 "has the /scratch trend" 'nomade_trend_slope_per_second{watch="scratch_used"}' ||
        warn "no /scratch trend in Prometheus after 60 s (see $DIR/log/analytics.log)"
    wait_query 60 "has the risk scores" 'nomade_job_risk_score' ||
        warn "no risk scores in Prometheus after 60 s (training needs enough finished jobs of both outcomes;" \
            "see $DIR/log/train.log and $DIR/log/analytics.log)"
    # more points over the history than the live evaluations alone could have made: the backfilled rule blocks
    wait_query 30 "has the recording-rule history" \
        "count_over_time(cluster:nomade_slurm_node_cpus_allocated:ratio[${HISTORY_SECONDS}s]) > $((HISTORY_SECONDS / 120))" ||
        warn "the recording rules' history is not visible yet (see $DIR/log/rules.log)"
    cmd_status
}

# prom_has PROMQL: the instant query returns at least one sample.
prom_has() {
    local url="http://$PROM_ADDR/api/v1/query"
    "$BIN/python" -c '
import json, sys, urllib.parse, urllib.request
q = urllib.parse.urlencode({"query": sys.argv[2]})
data = json.load(urllib.request.urlopen(sys.argv[1] + "?" + q, timeout=5))
sys.exit(0 if data["data"]["result"] else 1)' "$url" "$1" 2>/dev/null
}

# wait_query SECONDS DESCRIPTION PROMQL: poll until PROMQL returns a sample; false after SECONDS.
wait_query() {
    local deadline=$((SECONDS + $1))
    while ((SECONDS < deadline)); do
        prom_has "$3" && { log "prometheus: $2"; return 0; }
        sleep 1
    done
    return 1
}

# wait_scraped: Prometheus has scraped the live exporter once (up == 1), so the current jobs are in Prometheus.
wait_scraped() {
    wait_query 90 "scraped the exporter" 'up{job="nomade"} == 1' ||
        die "Prometheus has not scraped the exporter on $EXPORTER_ADDR within 90 s" \
            "(see $DIR/log/prometheus.log and $DIR/log/exporter.log)"
}

cmd_stop() {
    local n
    for n in analytics exporter prometheus alertmanager; do stop_pidfile "$n"; done
    log "stopped (state kept in $DIR)"
}

cmd_status() {
    local n state
    for n in alertmanager prometheus exporter analytics; do
        if ours "$DIR/run/$n.pid"; then state="running (pid $(<"$DIR/run/$n.pid"))"; else state="stopped"; fi
        printf '  %-13s %s\n' "$n" "$state"
    done
    cat <<EOF
  Prometheus:   http://$PROM_ADDR
  Alertmanager: http://$AM_ADDR
  exporter:     http://$EXPORTER_ADDR/metrics   (the simulated cluster)
  analytics:    http://$ANALYTICS_ADDR/metrics
  state and logs: $DIR
EOF
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 start|stop|status" >&2
        exit 2
        ;;
esac
