"""Check the lab workload's outcomes in sacct and write ``$LAB/workload.json`` (run by workload.sh).

Standard library only: it runs with the system ``/usr/bin/python3``, not the project's venv.

Input: ``$LAB/workload.tsv``, one tab-separated line per job written by workload.sh::

    name  job_id  user  account  partition  nodes  expected_state  expected_exit_code  failure_class

plus environment variables LAB, ELAPSED, DEP, FAIL, FAIL_NODE, DRAIN_NODE, DRAIN_REASON, CAN.

Output: ``$LAB/workload.json`` (schema below) and exit status 1 when sacct disagrees with an expectation.

Two SLURM 22.05 behaviours shape the check:

* ``sacct --json`` reports the allocation's exit code of a job that exited 3 as ``SUCCESS``/0 while
  ``sacct -P`` prints ``3:0``, so the parsable text output is used, with a delimiter (ASCII unit separator)
  that no job name here contains: one job name holds a pipe.
* The accounting database stores a job name's double quotes as backticks (``odd "x"`` reads back as
  ``odd `x```) while squeue and scontrol show the name as submitted; ``sacct_name`` records the former.
* When slurmctld restarts while finished jobs are still in its memory (MinJobAge, 300 s by default), it sends
  their records to slurmdbd again: "CANCELLED by <uid>" then reads "CANCELLED" (the requester's uid is
  lost) and TIMEOUT/CANCELLED/NODE_FAIL exit codes turn from 0:0 into 0:15. So for those jobs
  ``expected_exit_code`` is what sacct said when the workload ended and ``exit_code_stable`` is false;
  ``expected_sacct_state`` is the state right after the workload, ``expected_state`` the one that lasts.

workload.json::

    {"cluster": "lab", "generated_at": ISO time, "workload_seconds": int,
     "jobs": [{"name", "sacct_name", "job_id", "user", "account", "partition", "nodes" (or None),
               "expected_state", "expected_sacct_state", "expected_exit_code" ("3:0": exit:signal),
               "exit_code_stable" (bool), "failure_class" (None for the pending job)}, ...],
     "totals": {failure_class: count of finished jobs}, "finished_jobs": int,
     "pending": {"job_id", "reason", "dependency"}, "node_fail_node": "c04",
     "down_node": {"node", "state", "reason"}, "drained": {"node", "reason"}, "mismatches": [text, ...]}
"""

from __future__ import annotations

import collections
import json
import os
import pwd
import subprocess
import sys
import time

SEP = "\x1f"
FIELDS = ("JobID", "JobName", "User", "Account", "Partition", "State", "ExitCode", "NodeList")


def sacct_rows(job_ids: list[str]) -> dict[str, dict[str, str]]:
    """Allocation lines of ``job_ids`` from sacct, keyed by job id (``{field: text}``, fields as FIELDS).

    Raises:
        subprocess.CalledProcessError: sacct failed.

    """
    out = subprocess.run(
        ["sacct", "-a", "-X", "-n", "-P", f"--delimiter={SEP}", "-j", ",".join(job_ids), "-o", ",".join(FIELDS)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split(SEP)
        if len(parts) == len(FIELDS):
            rows[parts[0]] = dict(zip(FIELDS, parts, strict=True))
    return rows


def squeue_reason(job_id: str) -> str:
    """The pending reason squeue gives ``job_id`` (empty when the job left the queue)."""
    out = subprocess.run(["squeue", "-h", "-j", job_id, "-o", "%r"], capture_output=True, text=True).stdout
    return out.strip()


def main() -> int:
    """Compare, write the JSON, print a table; return 1 on any mismatch."""
    lab = os.environ["LAB"]
    jobs = []
    with open(f"{lab}/workload.tsv") as fh:
        for line in fh:
            name, job_id, user, account, partition, nodes, state, exit_code, cls = line.rstrip("\n").split("\t")
            sacct_state = state
            if state == "CANCELLED" and job_id == os.environ["CAN"]:
                # scancel by the owner: sacct prints "CANCELLED by <uid of the canceller>".
                sacct_state = f"CANCELLED by {pwd.getpwnam(user).pw_uid}"
            jobs.append(
                {
                    "name": name,
                    "sacct_name": name.replace('"', "`"),
                    "job_id": job_id,
                    "user": user,
                    "account": account,
                    "partition": partition,
                    "nodes": nodes or None,
                    "expected_state": state,
                    "expected_sacct_state": sacct_state,
                    "expected_exit_code": exit_code or None,  # unstable ones: filled from sacct below
                    "exit_code_stable": bool(exit_code),
                    "failure_class": cls or None,
                }
            )

    rows = sacct_rows([j["job_id"] for j in jobs])
    bad = []
    for j in jobs:
        row = rows.get(j["job_id"])
        if row is None:
            bad.append(f"{j['job_id']} ({j['name']}): not in sacct")
            continue
        expected = {
            "JobName": j["sacct_name"],
            "User": j["user"],
            "Account": j["account"],
            "Partition": j["partition"],
            "State": j["expected_sacct_state"],
        }
        if j["exit_code_stable"]:
            expected["ExitCode"] = j["expected_exit_code"]
        else:
            j["expected_exit_code"] = row["ExitCode"]
        if j["nodes"]:
            expected["NodeList"] = j["nodes"]
        diffs = [f"{k} {row[k]!r} != {v!r}" for k, v in expected.items() if row[k] != v]
        print(
            f"  {row['JobID']:>4} {row['User']:<6} {row['Partition']:<8} {row['State']:<18} "
            f"{row['ExitCode']:<6} {row['NodeList']:<14} {row['JobName']}"
        )
        if diffs:
            bad.append(f"{j['job_id']} ({j['name']}): " + "; ".join(diffs))

    reason = squeue_reason(os.environ["DEP"])
    if reason != "DependencyNeverSatisfied":
        bad.append(f"{os.environ['DEP']}: pending reason {reason!r} != 'DependencyNeverSatisfied'")

    finished = [j for j in jobs if j["expected_state"] != "PENDING"]
    doc = {
        "cluster": "lab",
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "workload_seconds": int(os.environ["ELAPSED"]),
        "jobs": jobs,
        "totals": dict(sorted(collections.Counter(j["failure_class"] for j in finished).items())),
        "finished_jobs": len(finished),
        "pending": {
            "job_id": os.environ["DEP"],
            "reason": "DependencyNeverSatisfied",
            "dependency": f"afterok:{os.environ['FAIL']}",
        },
        "node_fail_node": os.environ["FAIL_NODE"],
        "down_node": {"node": "ghost01", "state": "down*", "reason": "Not responding"},
        "drained": {"node": os.environ["DRAIN_NODE"], "reason": os.environ["DRAIN_REASON"]},
        "mismatches": bad,
    }
    tmp = f"{lab}/workload.json.tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, f"{lab}/workload.json")
    print(f"totals: {doc['totals']}")
    if bad:
        print("MISMATCH between sacct and the expected outcomes:", *bad, sep="\n  ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
