#!/usr/bin/env bash
# The NØMADE lab's ML workload: a stream of short jobs with designed failure modes, so that the failure-risk
# models (nomade.analytics.risk) have finished jobs to learn from and the risk test has outcomes to check.
# Run through `deploy/lab/lab.sh workload-ml [N]` (root; after `lab.sh start`, normally after `lab.sh workload`).
#
# N jobs (default 60) are submitted one every $NOMADE_LAB_ML_INTERVAL seconds (default 2), cycling through the
# families below in a fixed order, so that later jobs have a history of earlier ones (user/job-name history
# features count only jobs that ended before a job's submission). Every family has a stable job name and user.
# Then the script waits (bounded by $NOMADE_LAB_ML_TIMEOUT, default 420 s) until sacct has a final state for
# each job and writes $LAB/workload_ml.json: one entry per job with what it was designed to end as and what it
# ended as. Measured on the lab (4 compute nodes x 2 CPUs on a 2-core host, c03 drained by `lab.sh workload`,
# SLURM 22.05.8): the default 60 jobs take 157-181 s from the first sbatch to the last final state (120 s of
# submissions, then the last timeout), all 60 as designed (36 COMPLETED, 15 FAILED, 5 OUT_OF_MEMORY, 4 TIMEOUT).
#
# Families (user/account, partition, request -> designed outcome; SLURM 22.05, task/cgroup, cgroup v1 with
# ConstrainRAMSpace and ConstrainSwapSpace):
#   sim_ok        alice/physics   compute -c 1 --mem=200M  CPU busy loop for 4 s         COMPLETED 0:0
#   align_ok      carol/biology   compute -c 1 --mem=200M  sleep 4                       COMPLETED 0:0
#   etl_report    alice/physics   short   -c 1 --mem=200M  sleep 2; exits 1 on every 5th FAILED 1:0 (1 in 5) else
#                                                          submission of its family      COMPLETED 0:0
#   etl_load      bob/chemistry   short   -c 1 --mem=200M  sleep 2; exits 1 except on    FAILED 1:0 (4 in 5) else
#                                                          every 5th submission          COMPLETED 0:0
#   grow_mem      bob/chemistry   compute --mem=150M       python grows its heap by      OUT_OF_MEMORY 0:125
#                                                          16 MiB every 0.1 s to 600 MiB
#   scratch_stage alice/physics   compute --mem=200M       dd 32 MiB to $LAB/scratch     COMPLETED 0:0
#   scratch_dump  bob/chemistry   compute --mem=200M       dd 128 MiB to $LAB/scratch,   FAILED 2:0
#                                                          then exits 2 because it wrote
#                                                          more than 64 MiB
#   imbalanced    carol/biology   compute -c 2 --mem=200M  ONE thread busy for 4 s       COMPLETED 0:0 (CPU
#                                                          (the second CPU idles)        efficiency about 0.5)
#   quick_timeout carol/biology   compute -t 1 --mem=100M  sleep 300                     TIMEOUT (slurmctld checks
#                                                          (only in the first 4 cycles)  limits every ~30 s, so
#                                                                                        60-95 s after start)
# "Heavy local-disk writer" is a designed failure mode: the lab has no quota-enforcing filesystem, so
# scratch_dump emulates a scratch quota of 64 MiB by checking what it wrote (stat) and exiting 2 past it; the
# write itself is real (dd conv=fsync, so the bytes reach the disk and the job's I/O counters).
set -euo pipefail

LAB="${NOMADE_LAB_DIR:-/var/lib/nomade-lab}"
export SLURM_CONF="${SLURM_CONF:-$LAB/etc/slurm.conf}"
export LC_ALL=C SLURM_TIME_FORMAT=standard
N=${1:-${NOMADE_LAB_ML_JOBS:-60}}
INTERVAL=${NOMADE_LAB_ML_INTERVAL:-2}
MAX_WAIT=${NOMADE_LAB_ML_TIMEOUT:-420}
SCRATCH="$LAB/scratch"
SCRATCH_LIMIT_MB=64
PY=/usr/bin/python3
T0=$SECONDS
DEADLINE=$((SECONDS + MAX_WAIT))

log() { printf '[workload-ml %s +%ss] %s\n' "$(date +%T)" "$((SECONDS - T0))" "$*"; }
die() { printf '[workload-ml %s] ERROR: %s\n' "$(date +%T)" "$*" >&2; exit 1; }

[[ $EUID -eq 0 ]] || die "must run as root"
[[ $N =~ ^[0-9]+$ && $N -ge 1 ]] || die "N must be a positive integer (got '$N')"
[[ -d $LAB/jobs ]] || die "$LAB/jobs missing: start the lab first (deploy/lab/lab.sh start)"
for u in alice bob carol; do id -u "$u" >/dev/null 2>&1 || die "user $u missing: run through 'lab.sh workload-ml'"; done
mkdir -p "$SCRATCH"
chmod 1777 "$SCRATCH"
RECORDS="$LAB/workload_ml.tsv"
: >"$RECORDS"
rm -f "$LAB/workload_ml.json"

# submit USER SBATCH_ARGS... -> prints the job id (a clean environment, as in workload.sh).
submit() {
    local user=$1 out
    shift
    out=$(cd /tmp && runuser -u "$user" -- env -i PATH=/usr/local/bin:/usr/bin:/bin HOME="/home/$user" \
        LANG=C.UTF-8 SLURM_CONF="$SLURM_CONF" sbatch --parsable -o "$LAB/jobs/%j.out" "$@") ||
        die "sbatch as $user failed: $*"
    echo "${out%%;*}"
}

# The job bodies. Python one-liners run from `--wrap` (sh -c), so they avoid single quotes of their own.
BUSY="$PY -c 'import time
t = time.time() + 4
while time.time() < t: pass'"
GROW="$PY -c 'import time
chunks = []
for i in range(38):
    chunks.append(bytearray(16 << 20))
    time.sleep(0.1)
time.sleep(5)'"
writer() {  # writer MIB: dd MIB MiB to local scratch, exit 2 when more than SCRATCH_LIMIT_MB MiB were written
    printf '%s' "f=$SCRATCH/\$SLURM_JOB_ID.dat; dd if=/dev/zero of=\$f bs=1M count=$1 conv=fsync status=none || exit 3; " \
        "n=\$(stat -c %s \$f); rm -f \$f; " \
        "if [ \$n -gt $((SCRATCH_LIMIT_MB << 20)) ]; then echo scratch quota of ${SCRATCH_LIMIT_MB} MiB exceeded: \$n bytes >&2; exit 2; fi"
}

# The cycle of families (see the header); index i of the stream takes CYCLE[i % 12].
CYCLE=(sim_ok etl_load grow_mem etl_report scratch_stage imbalanced etl_load align_ok scratch_dump sim_ok
       quick_timeout etl_report)
declare -A SEEN=()

log "submitting $N jobs, one every ${INTERVAL}s"
for ((i = 0; i < N; i++)); do
    kind=${CYCLE[i % ${#CYCLE[@]}]}
    if [[ $kind == quick_timeout && $i -ge 48 ]]; then
        kind=align_ok   # a timeout holds a CPU for 60-95 s: none late in the stream, so it ends in time
    fi
    k=${SEEN[$kind]:-0}   # how many of this family were submitted before
    SEEN[$kind]=$((k + 1))
    case $kind in
        sim_ok)
            user=alice part=compute exp=COMPLETED ex=0:0
            id=$(submit alice -J sim_ok -p compute -t 5 -c 1 --mem=200M --wrap "$BUSY") ;;
        align_ok)
            user=carol part=compute exp=COMPLETED ex=0:0
            id=$(submit carol -J align_ok -p compute -t 5 -c 1 --mem=200M --wrap "sleep 4") ;;
        etl_report)
            user=alice part=short
            if ((k % 5 == 4)); then exp=FAILED ex=1:0 body="sleep 2; exit 1"; else exp=COMPLETED ex=0:0 body="sleep 2"; fi
            id=$(submit alice -J etl_report -p short -t 5 -c 1 --mem=200M --wrap "$body") ;;
        etl_load)
            user=bob part=short
            if ((k % 5 == 4)); then exp=COMPLETED ex=0:0 body="sleep 2"; else exp=FAILED ex=1:0 body="sleep 2; exit 1"; fi
            id=$(submit bob -J etl_load -p short -t 5 -c 1 --mem=200M --wrap "$body") ;;
        grow_mem)
            user=bob part=compute exp=OUT_OF_MEMORY ex=0:125
            id=$(submit bob -J grow_mem -p compute -t 5 -c 1 --mem=150M --wrap "$GROW") ;;
        scratch_stage)
            user=alice part=compute exp=COMPLETED ex=0:0
            id=$(submit alice -J scratch_stage -p compute -t 5 -c 1 --mem=200M --wrap "$(writer 32)") ;;
        scratch_dump)
            user=bob part=compute exp=FAILED ex=2:0
            id=$(submit bob -J scratch_dump -p compute -t 5 -c 1 --mem=200M --wrap "$(writer 128)") ;;
        imbalanced)
            user=carol part=compute exp=COMPLETED ex=0:0
            id=$(submit carol -J imbalanced -p compute -t 5 -c 2 --mem=200M --wrap "$BUSY") ;;
        quick_timeout)
            user=carol part=compute exp=TIMEOUT ex=""
            id=$(submit carol -J quick_timeout -p compute -t 1 -c 1 --mem=100M --wrap "sleep 300") ;;
        *) die "unknown family $kind" ;;
    esac
    case $user in alice) acct=physics ;; bob) acct=chemistry ;; carol) acct=biology ;; esac
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$i" "$id" "$kind" "$user" "$acct" "$part" "$exp" "$ex" >>"$RECORDS"
    ((i + 1 < N)) && sleep "$INTERVAL"
done
log "submitted $N jobs ($(cut -f2 "$RECORDS" | head -n1)..$(cut -f2 "$RECORDS" | tail -n1))"

# Wait for every job's final state in sacct (one sacct call per poll for all of them).
IDS=$(cut -f2 "$RECORDS" | paste -sd,)
unfinished() {
    sacct -n -X -P -j "$IDS" -o JobIDRaw,State 2>/dev/null |
        awk -F'|' '$2 ~ /^(PENDING|RUNNING|REQUEUED|SUSPENDED|RESIZING|COMPLETING|CONFIGURING)/ {n++} END {print n+0}'
}
finished_count() { sacct -n -X -P -j "$IDS" -o JobIDRaw 2>/dev/null | wc -l; }
rc=0
while :; do
    left=$(unfinished)
    if [[ $left == 0 && $(finished_count) -ge $N ]]; then
        log "all $N jobs final"
        break
    fi
    if ((SECONDS >= DEADLINE)); then
        log "timed out after ${MAX_WAIT}s with $left job(s) not final"
        rc=1
        break
    fi
    sleep 3
done

ELAPSED=$((SECONDS - T0))
SACCT=$(sacct -n -X -P -j "$IDS" -o JobIDRaw,State,ExitCode,NodeList,Start,End)
RECORDS="$RECORDS" SACCT="$SACCT" ELAPSED="$ELAPSED" OUT="$LAB/workload_ml.json" N="$N" INTERVAL="$INTERVAL" \
    $PY - <<'EOF'
import json, os

sacct = {}
for line in os.environ["SACCT"].splitlines():
    jid, state, exit_code, nodes, start, end = line.split("|")
    sacct[jid] = {"state": state.split()[0] if state else "", "exit_code": exit_code, "nodelist": nodes,
                  "start": start, "end": end}
jobs = []
for line in open(os.environ["RECORDS"]):
    i, jid, kind, user, acct, part, exp, ex = line.rstrip("\n").split("\t")
    got = sacct.get(jid, {})
    ok = got.get("state") == exp and (not ex or got.get("exit_code") == ex)
    jobs.append({"index": int(i), "job_id": jid, "name": kind, "user": user, "account": acct, "partition": part,
                 "expected_state": exp, "expected_exit": ex, **got, "as_designed": ok})
counts = {}
for j in jobs:
    counts[j.get("state", "")] = counts.get(j.get("state", ""), 0) + 1
doc = {"n": len(jobs), "interval_s": float(os.environ["INTERVAL"]), "elapsed_s": int(os.environ["ELAPSED"]),
       "states": counts, "not_as_designed": [j["job_id"] for j in jobs if not j["as_designed"]], "jobs": jobs}
tmp = os.environ["OUT"] + ".tmp"
with open(tmp, "w") as f:
    json.dump(doc, f, indent=1)
os.replace(tmp, os.environ["OUT"])
print(f"states {counts}; not as designed: {doc['not_as_designed'] or 'none'}")
EOF
rm -f "$RECORDS"
log "workload-ml done in ${ELAPSED}s; wrote $LAB/workload_ml.json"
exit "$rc"
