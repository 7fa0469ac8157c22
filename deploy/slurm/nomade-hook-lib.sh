#!/bin/bash
# Shared by the NØMADE SLURM hooks prolog.sh and epilog.sh, which source it from their own directory (install the
# three files together, e.g. in /etc/slurm/nomade/). Defines conf_get, setting and say, and sets log_file and
# use_syslog. Sourced, never run; nothing here exits non-zero.
# shellcheck shell=bash

conf="${NOMADE_HOOKS_CONF:-/etc/nomade/hooks.conf}"

# conf_get KEY: value of KEY from the configuration file (last one wins), printed; nothing when absent.
conf_get() {
    [ -r "$conf" ] || return 0
    awk -v k="$1" -F= '
        /^[ \t]*#/ { next }
        { key = $1; gsub(/^[ \t]+|[ \t]+$/, "", key) }
        key == k { v = substr($0, index($0, "=") + 1); gsub(/^[ \t"]+|[ \t"]+$/, "", v); found = v }
        END { if (found != "") print found }' "$conf" 2>/dev/null
}

# setting NAME DEFAULT: environment, else configuration file, else DEFAULT.
setting() {
    local v="${!1:-}"
    [ -n "$v" ] || v="$(conf_get "$1")"
    printf '%s' "${v:-$2}"
}

log_file="$(setting NOMADE_HOOK_LOG '')"
use_syslog="$(setting NOMADE_HOOK_SYSLOG 1)"

# say MESSAGE: one log line to syslog (tag nomade) and/or the log file; never fails.
say() {
    if [ "$use_syslog" != 0 ] && command -v logger >/dev/null 2>&1; then
        logger -t nomade -p user.info -- "$1" >/dev/null 2>&1 || true
    fi
    if [ -n "$log_file" ]; then
        printf '%s %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$1" >>"$log_file" 2>/dev/null || true
    fi
}

