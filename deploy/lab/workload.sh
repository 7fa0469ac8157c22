#!/usr/bin/env bash
# The known workload of the NØMADE lab: one job per outcome class, submitted as the ordinary users alice
# (account physics) and bob (account chemistry), then a NODE_FAIL, a never-satisfied dependency and a drained
# node. Waits (bounded) until every job has its final state in sacct, checks each against what it expects
# and writes $LAB/workload.json for the integration tests. Run through `deploy/lab/lab.sh workload`.
#
# What each job is expected to end as (SLURM 22.05, task/cgroup + proctrack/cgroup, cgroup v1):
#   ok_alice, ok_bob, multi_ok (-N 2, srun), gpu (--gres=gpu:1 on gpu01), the oddly named one
#                                             COMPLETED 0:0       success
#   exit3        `exit 3`                     FAILED 3:0          failed
#   timeout      -t 1 min on `sleep 300`      TIMEOUT             timeout (slurmctld checks limits every ~30 s)
#   cancel_me    scancel by alice, running    CANCELLED by <uid>  cancelled (plain CANCELLED once slurmctld
#                                                                 restarted: the re-sent record has no requid)
#   oom          --mem=100M, writes 600 MiB   OUT_OF_MEMORY 0:125 out_of_memory
#   segfault     exec python3 NULL read       FAILED 0:11         segfault (the batch shell is replaced by
#                                                                 python3, so the step dies of signal 11)
#   nodefail_single / nodefail_multi (-N 2 on c03,c04): slurmd of c04 is killed with SIGKILL while they run
#                                             NODE_FAIL           node_fail
#   waits_forever --dependency=afterok:<exit3 job>: stays PENDING, reason DependencyNeverSatisfied (the lab's
#                 slurm.conf has no SchedulerParameters=kill_invalid_depend, so SLURM never cancels it).
# Then c03 is drained with a reason holding commas, double quotes and a pipe.
set -euo pipefail

LAB="${NOMADE_LAB_DIR:-/var/lib/nomade-lab}"
export SLURM_CONF="${SLURM_CONF:-$LAB/etc/slurm.conf}"
export LC_ALL=C SLURM_TIME_FORMAT=standard
MAX_WAIT=${NOMADE_LAB_WORKLOAD_TIMEOUT:-240}   # seconds for the whole workload to reach its final states
FAIL_NODE=c04
DRAIN_NODE=c03
DRAIN_REASON='disk "sda" failing, replace|ticket 42'
WEIRD_NAME=$'odd "double" \'single\' back\\slash|pipe'
PY=/usr/bin/python3
T0=$SECONDS
DEADLINE=$((SECONDS + MAX_WAIT))

log() { printf '[workload %s +%ss] %s\n' "$(date +%T)" "$((SECONDS - T0))" "$*"; }
die() { printf '[workload %s] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root"
[[ -d $LAB/jobs ]] || die "$LAB/jobs missing: start the lab first (deploy/lab/lab.sh start)"
RECORDS="$LAB/workload.tsv"
: >"$RECORDS"
rm -f "$LAB/workload.json"

# submit USER SBATCH_ARGS... -> prints the job id. A clean environment: the jobs must not inherit root's PATH.
submit() {
    local user=$1 out
    shift
    out=$(cd /tmp && runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="/home/$user" \
        LANG=C.UTF-8 SLURM_CONF="$SLURM_CONF" sbatch --parsable -o "$LAB/jobs/%j.out" "$@") ||
        die "sbatch as $user failed: $*"
    echo "${out%%;*}"
}

# record NAME ID USER ACCOUNT PARTITION NODES STATE EXIT CLASS: one expected outcome (tab-separated).
record() { printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RECORDS"; }

live_state() { squeue -h -t all -j "$1" -o %T 2>/dev/null | head -n1; }

# wait_until DESCRIPTION COMMAND...: poll until COMMAND succeeds, bounded by the workload deadline.
wait_until() {
    local what=$1
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < DEADLINE)) || die "timed out (${MAX_WAIT}s) waiting for: $what"
        sleep 1
    done
    log "$what"
}

is_running() { [[ $(live_state "$1") == RUNNING ]]; }
node_state_is() { [[ $(sinfo -h -N -n "$1" -o %t | head -n1) == "$2" ]]; }
sacct_state() { sacct -n -X -P -j "$1" -o State 2>/dev/null | head -n1; }
is_final() {
    local s
    s=$(sacct_state "$1")
    [[ -n $s && $s != PENDING && $s != RUNNING && $s != REQUEUED && $s != SUSPENDED && $s != RESIZING ]]
}
sacct_state_is() { [[ $(sacct_state "$1") == "$2" ]]; }
reason_is() { [[ $(squeue -h -j "$1" -o %r) == "$2" ]]; }

# -------------------------------------------------------------------------------- a rerun starts clean
# A second run without `lab.sh reset` finds c03 still drained and the never-satisfied dependency still
# pending from the first: resume the node and cancel the old jobs so the pinned jobs below can start.
if sinfo -h -n "$DRAIN_NODE" -o %T | grep -q drain; then
    log "resuming $DRAIN_NODE, drained by an earlier run"
    scontrol update nodename="$DRAIN_NODE" state=resume
fi
old_jobs=$(squeue -h -o %i | tr '\n' ' ')
if [[ -n ${old_jobs// /} ]]; then
    log "cancelling jobs left by an earlier run: $old_jobs"
    # shellcheck disable=SC2086
    scancel $old_jobs
    # shellcheck disable=SC2016  # $(squeue ...) must expand in the inner bash, not here
    wait_until "earlier jobs gone" bash -c '[[ -z $(squeue -h -o %i) ]]'
fi

# -------------------------------------------------------------------------------- NODE_FAIL jobs first
# They are pinned to c04 (and c03); every other compute job excludes c04, so the kill hits only these two.
MEM=(--mem=200M)
NF1=$(submit alice -J nodefail_single -p compute -N 1 -w "$FAIL_NODE" "${MEM[@]}" --wrap "sleep 600")
NF2=$(submit bob -J nodefail_multi -p compute -N 2 -w "$DRAIN_NODE,$FAIL_NODE" "${MEM[@]}" --wrap "sleep 600")
both_running() { is_running "$NF1" && is_running "$NF2"; }
wait_until "nodefail jobs $NF1 $NF2 running" both_running

# -------------------------------------------------------------------------------- the other jobs
X=(-x "$FAIL_NODE")
OK1=$(submit alice -J ok_alice -p compute "${X[@]}" "${MEM[@]}" --wrap "sleep 3")
OK2=$(submit bob -J ok_bob -p compute "${X[@]}" "${MEM[@]}" --wrap "sleep 3")
FAIL=$(submit alice -J exit3 -p compute "${X[@]}" "${MEM[@]}" --wrap "sleep 1; exit 3")
DEP=$(submit alice -J waits_forever -p compute "${X[@]}" "${MEM[@]}" --dependency="afterok:$FAIL" --wrap "true")
TMO=$(submit bob -J timeout -p short -t 00:01:00 "${MEM[@]}" --wrap "sleep 300")
CAN=$(submit alice -J cancel_me -p compute "${X[@]}" "${MEM[@]}" --wrap "sleep 300")
OOM=$(submit bob -J oom -p compute "${X[@]}" --mem=100M \
    --wrap "$PY -c 'import time; x = b\"x\" * (600 << 20); time.sleep(5)'")
SEGV=$(submit alice -J segfault -p compute "${X[@]}" "${MEM[@]}" \
    --wrap "exec $PY -c 'import ctypes; ctypes.string_at(0)'")
MULTI=$(submit bob -J multi_ok -p compute -N 2 "${X[@]}" "${MEM[@]}" --wrap "srun sleep 2")
GPU=$(submit alice -J gpu -p gpu -w gpu01 --gres=gpu:1 "${MEM[@]}" --wrap "sleep 2")
WEIRD=$(submit bob -J "$WEIRD_NAME" -p compute "${X[@]}" "${MEM[@]}" --wrap "sleep 1")
log "submitted: nodefail $NF1 $NF2, ok $OK1 $OK2, exit3 $FAIL, dep $DEP, timeout $TMO, cancel $CAN," \
    "oom $OOM, segfault $SEGV, multi $MULTI, gpu $GPU, odd name $WEIRD"

# -------------------------------------------------------------------------------- NODE_FAIL
sleep 3   # let both batch steps start on their nodes
pid=$(<"$LAB/run/slurmd-$FAIL_NODE.pid")
[[ $(cat "/proc/$pid/comm" 2>/dev/null) == slurmd ]] || die "no slurmd of $FAIL_NODE at pid $pid"
log "kill -9 slurmd of $FAIL_NODE (pid $pid)"
kill -KILL "$pid"

# -------------------------------------------------------------------------------- cancel by the user
wait_until "job $CAN running" is_running "$CAN"
sleep 2
runuser -u alice -- env SLURM_CONF="$SLURM_CONF" scancel "$CAN"
log "alice cancelled $CAN"

wait_until "$FAIL_NODE down* (not responding)" node_state_is "$FAIL_NODE" 'down*'
wait_until "job $NF1 NODE_FAIL" sacct_state_is "$NF1" NODE_FAIL
wait_until "job $NF2 NODE_FAIL" sacct_state_is "$NF2" NODE_FAIL
slurmd -N "$FAIL_NODE" || die "restarting slurmd -N $FAIL_NODE failed"
wait_until "$FAIL_NODE back in service (idle)" node_state_is "$FAIL_NODE" idle

# -------------------------------------------------------------------------------- final states
ALL=("$NF1" "$NF2" "$OK1" "$OK2" "$FAIL" "$TMO" "$CAN" "$OOM" "$SEGV" "$MULTI" "$GPU" "$WEIRD")
for id in "${ALL[@]}"; do
    wait_until "job $id final" is_final "$id"
done
wait_until "job $DEP pending on DependencyNeverSatisfied" reason_is "$DEP" DependencyNeverSatisfied

# -------------------------------------------------------------------------------- drain
scontrol update nodename="$DRAIN_NODE" state=drain reason="$DRAIN_REASON"
wait_until "$DRAIN_NODE drained" node_state_is "$DRAIN_NODE" drain

# -------------------------------------------------------------------------------- expectations
# record NAME ID USER ACCOUNT PARTITION NODES STATE EXIT CLASS (NODES only where the job was pinned).
# EXIT is left empty where SLURM does not keep it stable: TIMEOUT, CANCELLED and NODE_FAIL jobs read 0:0 in
# sacct right after they end, but 0:15 (the batch step's SIGTERM) once slurmctld restarts within MinJobAge
# (300 s) and sends its in-memory job records to slurmdbd again.
record nodefail_single "$NF1" alice physics compute "$FAIL_NODE" NODE_FAIL "" node_fail
record nodefail_multi "$NF2" bob chemistry compute "c[03-04]" NODE_FAIL "" node_fail
record ok_alice "$OK1" alice physics compute "" COMPLETED 0:0 success
record ok_bob "$OK2" bob chemistry compute "" COMPLETED 0:0 success
record exit3 "$FAIL" alice physics compute "" FAILED 3:0 failed
record timeout "$TMO" bob chemistry short "" TIMEOUT "" timeout
record cancel_me "$CAN" alice physics compute "" CANCELLED "" cancelled
record oom "$OOM" bob chemistry compute "" OUT_OF_MEMORY 0:125 out_of_memory
record segfault "$SEGV" alice physics compute "" FAILED 0:11 segfault
record multi_ok "$MULTI" bob chemistry compute "" COMPLETED 0:0 success
record gpu "$GPU" alice physics gpu gpu01 COMPLETED 0:0 success
record "$WEIRD_NAME" "$WEIRD" bob chemistry compute "" COMPLETED 0:0 success
record waits_forever "$DEP" alice physics compute "" PENDING 0:0 ""

ELAPSED=$((SECONDS - T0))
LAB="$LAB" ELAPSED="$ELAPSED" DEP="$DEP" FAIL="$FAIL" FAIL_NODE="$FAIL_NODE" DRAIN_NODE="$DRAIN_NODE" \
    DRAIN_REASON="$DRAIN_REASON" CAN="$CAN" $PY "$(dirname "${BASH_SOURCE[0]}")/workload_report.py"
rm -f "$RECORDS"
log "workload done in ${ELAPSED}s; wrote $LAB/workload.json"
