#!/bin/bash
# NØMADE: record which GPUs a SLURM job holds, for the exporter's gpu collector (nomade_gpu_job_info).
#
# Install on every GPU node and run it both as slurmd Prolog and Epilog (slurm.conf), e.g.
#     Prolog=/etc/slurm/prolog.d/*        # with a link prolog.d/50-nomade-gpu.sh -> this file
#     Epilog=/etc/slurm/epilog.d/*        # with a link epilog.d/50-nomade-gpu.sh -> this file
# or call it from an existing Prolog/Epilog script. It tells the two apart by SLURM_SCRIPT_CONTEXT
# ("prolog_slurmd" / "epilog_slurmd", slurm.conf(5) "Prolog and Epilog Scripts"), else by its own name.
#
# Prolog: writes <dir>/<SLURM_JOB_ID> (dir: NOMADE_GPU_JOB_DIR, default /run/nomade/gpu-jobs) containing
#     gpus=<SLURM_JOB_GPUS>     e.g. "0,2": the job's GPU ids as SLURM gives them to the prolog
#     user=<SLURM_JOB_USER>
# Epilog: removes that file.
# The ids are nvidia-smi indexes when gres.conf lists the GPUs in PCI order (AutoDetect=nvml does); when
# gres.conf's File=/dev/nvidia[...] order differs, set [collector.gpu] job_file_ids = "minor".
#
# It always exits 0: a failing Prolog would drain the node, and a missing mapping is only a missing series.

dir="${NOMADE_GPU_JOB_DIR:-/run/nomade/gpu-jobs}"
job="${SLURM_JOB_ID:-}"
case "$job" in '' | *[!0-9]*) exit 0 ;; esac

context="${SLURM_SCRIPT_CONTEXT:-}"
if [ -z "$context" ]; then
    case "$(basename -- "$0")" in *epilog*) context=epilog_slurmd ;; *) context=prolog_slurmd ;; esac
fi

case "$context" in
epilog*)
    rm -f -- "$dir/$job"
    exit 0
    ;;
esac

gpus="${SLURM_JOB_GPUS:-}"
# Only what the exporter's parser accepts (ids and ranges); anything else is not written.
case "$gpus" in '' | *[!0-9,-]*) exit 0 ;; esac
user="${SLURM_JOB_USER:-}"
case "$user" in *[!A-Za-z0-9._-]*) user="" ;; esac

umask 022 # directories 0755, files 0644
mkdir -p -- "$dir" 2>/dev/null || exit 0
tmp="$dir/.$job.$$"
# Write then rename, so that the exporter never reads a half-written file.
if printf 'gpus=%s\nuser=%s\n' "$gpus" "$user" >"$tmp" 2>/dev/null; then
    chmod 0644 -- "$tmp" 2>/dev/null
    mv -f -- "$tmp" "$dir/$job" 2>/dev/null || rm -f -- "$tmp"
fi
exit 0
