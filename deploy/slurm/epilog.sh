#!/bin/bash
# NØMADE SLURM Epilog: remove the job's GPU mapping file written by prolog.sh (or prolog-gpu.sh) and log the end.
#
# slurm.conf: Epilog=/etc/slurm/nomade/epilog.sh (with Prolog=.../prolog.sh; see prolog.sh for the settings).
# Settings (environment first, else /etc/nomade/hooks.conf read as data, never sourced): NOMADE_GPU_JOB_DIR
# (default /run/nomade/gpu-jobs), NOMADE_HOOK_SYSLOG (1; 0: no logger), NOMADE_HOOK_LOG (file, default none).
# Logs "job <id> user <user> ended". It ALWAYS exits 0 (a failing Epilog drains the node, slurm.conf(5)).

PATH=/usr/bin:/bin:/usr/sbin:/sbin
export PATH
trap 'exit 0' HUP INT TERM

# The settings and logging helpers, from this script's own directory. A hook without its library still exits 0
# (a failing hook drains the node) and does nothing else, but first says so in syslog (tag nomade-epilog, unless
# NOMADE_HOOK_SYSLOG=0 in the environment; the configuration file cannot be read without the library).
hook_dir="${BASH_SOURCE[0]%/*}"
[ "$hook_dir" != "${BASH_SOURCE[0]}" ] || hook_dir=.
# shellcheck source=SCRIPTDIR/nomade-hook-lib.sh
if ! . "$hook_dir/nomade-hook-lib.sh" 2>/dev/null; then
    if [ "${NOMADE_HOOK_SYSLOG:-1}" != 0 ] && command -v logger >/dev/null 2>&1; then
        msg="epilog: cannot load $hook_dir/nomade-hook-lib.sh (missing or unreadable; install it next to epilog.sh)"
        logger -t nomade-epilog -p user.err -- "$msg: nothing done" >/dev/null 2>&1 || true
    fi
    exit 0
fi

job="${SLURM_JOB_ID:-}"
case "$job" in
'' | *[!0-9]*)
    say "epilog: invalid or missing SLURM_JOB_ID (not digits), nothing done"
    exit 0
    ;;
esac
user="${SLURM_JOB_USER:-}"
case "$user" in *[!A-Za-z0-9._-]*) user="" ;; esac

dir="$(setting NOMADE_GPU_JOB_DIR /run/nomade/gpu-jobs)"
rm -f -- "$dir/$job" 2>/dev/null
say "job $job user ${user:-?} ended"
exit 0
