#!/bin/bash
# NØMADE SLURM Prolog: record the job's GPUs for the exporter's gpu collector, then log the job's failure risk.
#
# slurm.conf (every compute node; see slurm.conf(5) "Prolog", "Epilog", "PrologFlags"):
#     Prolog=/etc/slurm/nomade/prolog.sh
#     Epilog=/etc/slurm/nomade/epilog.sh
#     PrologFlags=Alloc      # optional: run the prolog at allocation time (salloc jobs too), not at first step
# (or a link prolog.d/50-nomade.sh -> this file with Prolog=/etc/slurm/prolog.d/*). slurmd runs it as root.
#
# 1. GPU mapping, the contract of prolog-gpu.sh and of nomade.exporter.parsers.nvidia_smi.parse_gpu_job_file:
#    <NOMADE_GPU_JOB_DIR>/<SLURM_JOB_ID> (default dir /run/nomade/gpu-jobs, 0644, written then renamed) holding
#        gpus=<SLURM_JOB_GPUS>      (ids and ranges only, e.g. 0,2 or 0-3; no file when the job has no GPU)
#        user=<SLURM_JOB_USER>      (empty when it is not a plain user name)
# 2. Risk: one Prometheus instant query (HTTP API /api/v1/query)
#        nomade_job_risk_score{job_id="<id>"} or nomade_job_risk_scoring_info
#    under a hard time bound (curl --max-time, plus timeout(1) when present), and logs
#        job <id> user <user> risk <score> state <state> (model <setting> <version>)
#    or  job <id> user <user> risk unavailable: <reason>
#    to syslog (logger -t nomade) and/or a file. The JSON is parsed with awk/sed (no jq, no python).
#
# Settings: environment first, else /etc/nomade/hooks.conf (path: NOMADE_HOOKS_CONF), lines KEY=VALUE, read as
# data (never sourced or eval'ed), unknown keys ignored:
#     NOMADE_PROMETHEUS_URL   http://127.0.0.1:9090   (http or https; [A-Za-z0-9.:_/-] only, else risk is skipped)
#     NOMADE_RISK_TIMEOUT     2                       seconds for the whole query (0.1-30, decimals allowed)
#     NOMADE_RISK_QUERY       1                       0: no risk query (GPU mapping only)
#     NOMADE_HOOK_SYSLOG      1                       0: no logger(1)
#     NOMADE_HOOK_LOG         (empty)                 file to append the log lines to
#     NOMADE_GPU_JOB_DIR      /run/nomade/gpu-jobs
# Needs bash, curl, awk, sed (coreutils timeout and util-linux logger used when present).
#
# It ALWAYS exits 0: a non-zero Prolog drains the node (slurm.conf(5) "Prolog"); NØMADE being down only costs a
# log line. The total run time is at most NOMADE_RISK_TIMEOUT + ~0.5 s.

PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH
umask 022 # mapping directory 0755, files 0644
trap 'exit 0' HUP INT TERM

# The settings and logging helpers, from this script's own directory. A hook without its library still exits 0
# (a failing hook drains the node) and does nothing else, but first says so in syslog (tag nomade-prolog, unless
# NOMADE_HOOK_SYSLOG=0 in the environment; the configuration file cannot be read without the library).
hook_dir="${BASH_SOURCE[0]%/*}"
[ "$hook_dir" != "${BASH_SOURCE[0]}" ] || hook_dir=.
# shellcheck source=SCRIPTDIR/nomade-hook-lib.sh
if ! . "$hook_dir/nomade-hook-lib.sh" 2>/dev/null; then
    if [ "${NOMADE_HOOK_SYSLOG:-1}" != 0 ] && command -v logger >/dev/null 2>&1; then
        msg="prolog: cannot load $hook_dir/nomade-hook-lib.sh (missing or unreadable; install it next to prolog.sh)"
        logger -t nomade-prolog -p user.err -- "$msg: nothing done" >/dev/null 2>&1 || true
    fi
    exit 0
fi

job="${SLURM_JOB_ID:-}"
case "$job" in
'' | *[!0-9]*)
    say "prolog: invalid or missing SLURM_JOB_ID (not digits), nothing done"
    exit 0
    ;;
esac
user="${SLURM_JOB_USER:-}"
case "$user" in *[!A-Za-z0-9._-]*) user="" ;; esac

# --- 1. GPU mapping -------------------------------------------------------------------------------------------
dir="$(setting NOMADE_GPU_JOB_DIR /run/nomade/gpu-jobs)"
gpus="${SLURM_JOB_GPUS:-}"
case "$gpus" in
'') ;;
*[!0-9,-]*) say "prolog: job $job: SLURM_JOB_GPUS not an id list, GPU mapping not written" ;;
*)
    if mkdir -p -- "$dir" 2>/dev/null; then
        tmp="$dir/.$job.$$"
        # Write then rename, so that the exporter never reads a half-written file.
        if printf 'gpus=%s\nuser=%s\n' "$gpus" "$user" >"$tmp" 2>/dev/null; then
            chmod 0644 -- "$tmp" 2>/dev/null
            mv -f -- "$tmp" "$dir/$job" 2>/dev/null || rm -f -- "$tmp"
        fi
    else
        say "prolog: job $job: cannot create $dir, GPU mapping not written"
    fi
    ;;
esac

# --- 2. Risk --------------------------------------------------------------------------------------------------
[ "$(setting NOMADE_RISK_QUERY 1)" = 0 ] && exit 0

url="$(setting NOMADE_PROMETHEUS_URL http://127.0.0.1:9090)"
url="${url%/}"
budget="$(setting NOMADE_RISK_TIMEOUT 2)"
if ! [[ "$budget" =~ ^[0-9]{1,2}(\.[0-9]{1,3})?$ ]] || [[ "$budget" =~ ^0+(\.0*)?$ ]] || [ "${budget%%.*}" -gt 30 ]; then
    budget=2
fi
who="job $job user ${user:-?}"

if ! [[ "$url" =~ ^https?://[A-Za-z0-9.:_/-]+$ ]]; then
    say "$who risk unavailable: NOMADE_PROMETHEUS_URL is not a plain http(s) URL"
    exit 0
fi
if ! command -v curl >/dev/null 2>&1; then
    say "$who risk unavailable: curl not installed"
    exit 0
fi

query="nomade_job_risk_score{job_id=\"$job\"} or nomade_job_risk_scoring_info"
cmd=(curl -sS -G --max-time "$budget" --connect-timeout "$budget" --max-filesize 1000000 -w '\n%{http_code}'
    --data-urlencode "query=$query" -- "$url/api/v1/query")
if command -v timeout >/dev/null 2>&1; then
    # Belt and braces around curl's own limit (a stuck resolver, a stopped process).
    cmd=(timeout -k 0.2 "$(awk -v b="$budget" 'BEGIN { printf "%.1f", b + 0.3 }')" "${cmd[@]}")
fi
out="$("${cmd[@]}" 2>/dev/null)"
rc=$?
code="${out##*$'\n'}"
body="${out%$'\n'*}"
case "$rc" in
0) ;;
7) say "$who risk unavailable: cannot connect to $url (connection refused)"; exit 0 ;;
6) say "$who risk unavailable: cannot resolve the host of $url"; exit 0 ;;
28 | 124 | 137) say "$who risk unavailable: no answer from $url within ${budget} s"; exit 0 ;;
*) say "$who risk unavailable: query to $url failed (curl exit $rc)"; exit 0 ;;
esac
if [ "$code" != 200 ]; then
    case "$code" in *[!0-9]*) code="?" ;; esac
    say "$who risk unavailable: HTTP $code from $url"
    exit 0
fi
case "$body" in
*'"status":"success"'*) ;;
*) say "$who risk unavailable: unexpected answer from $url"; exit 0 ;;
esac

# One result per line; labels and value picked with sed (Prometheus writes compact JSON, labels as strings).
results="$(printf '%s' "$body" | awk '{ gsub(/\{"metric":/, "\n{\"metric\":"); print }')"
label() { printf '%s' "$2" | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }
score="" state="" infos=""
while IFS= read -r line; do
    case "$line" in
    *'"__name__":"nomade_job_risk_score"'*)
        score="$(printf '%s' "$line" | sed -n 's/.*"value":\[[^],]*,"\([^"]*\)"\].*/\1/p')"
        state="$(label state "$line")"
        ;;
    *'"__name__":"nomade_job_risk_scoring_info"'*) infos="$infos$line"$'\n' ;;
    esac
done <<<"$results"

if [ -z "$score" ]; then
    say "$who risk unavailable: no score yet"
    exit 0
fi
if ! [[ "$score" =~ ^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$ ]]; then
    say "$who risk unavailable: unreadable score"
    exit 0
fi
model="model unknown"
while IFS= read -r line; do
    [ -n "$line" ] || continue
    if [ "$(label state "$line")" = "$state" ]; then
        setting_="$(label setting "$line")"
        version="$(label version "$line")"
        model="model ${setting_:-?} $version"
        break
    fi
done <<<"$infos"
model="$(printf '%s' "$model" | tr -cd 'A-Za-z0-9._:+ -')"
state="$(printf '%s' "$state" | tr -cd 'A-Za-z_')"
say "$who risk $score state ${state:-?} ($model)"
exit 0
