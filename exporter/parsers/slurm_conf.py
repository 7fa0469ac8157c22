r"""Parser for ``slurm.conf``: the global parameters, and the daemon endpoints they name.

Syntax (``slurm.conf(5)``): one ``Parameter=value`` per line for global parameters, parameter names are case
insensitive, ``#`` starts a comment, a trailing ``\`` continues the line, values may be double-quoted.
``NodeName=``/``PartitionName=``/``NodeSet=``/``DownNodes=``/``FrontendName=`` lines hold several pairs and
describe nodes and partitions; they are skipped here (only their first key is read, and ignored). ``Include``
lines are not followed (a pure parser does no I/O): endpoints defined in included files are not found.

Endpoints (``slurm.conf(5)``):

- ``SlurmctldHost=name[(address)]``, repeated for backups (the first is the primary); the older
  ``ControlMachine``/``ControlAddr`` and ``BackupController``/``BackupAddr`` pairs are read when no
  ``SlurmctldHost`` exists. Port: ``SlurmctldPort`` (default 6817; a range ``6817-6818`` gives its first port).
- slurmdbd, when ``AccountingStorageType=accounting_storage/slurmdbd``: ``AccountingStorageHost`` and
  ``AccountingStorageBackupHost``, port ``AccountingStoragePort`` (default 6819).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .common import ParseResult

DEFAULT_SLURMCTLD_PORT = 6817
DEFAULT_SLURMDBD_PORT = 6819

_MULTI_KEYS = frozenset({"nodename", "partitionname", "nodeset", "downnodes", "frontendname", "switchname"})
_PAIR = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)$")
_HOST = re.compile(r"^([^()\s]+)(?:\(([^()\s]+)\))?$")


@dataclass(frozen=True)
class SlurmConfParam:
    """One global ``Key=value`` line.

    Attributes:
        key: the parameter name in lower case (``slurmctldhost``).
        value: the value, outer double quotes removed.
        line_no: 1-based line number of the line's start.

    """

    key: str
    value: str
    line_no: int


@dataclass(frozen=True)
class Endpoint:
    """A TCP endpoint named by slurm.conf.

    Attributes:
        name: ``slurmctld``, ``slurmctld-backup1``..., ``slurmdbd``, ``slurmdbd-backup``.
        host: the address to connect to (the ``(address)`` part of ``SlurmctldHost`` when given).
        port: TCP port.

    """

    name: str
    host: str
    port: int


def _logical_lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    buf, start = "", 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].rstrip()
        if not buf:
            start = no
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append((start, buf.strip()))
        buf = ""
    if buf.strip():
        out.append((start, buf.strip()))
    return out


def parse_slurm_conf(text: str) -> ParseResult[SlurmConfParam]:
    """Parse the global parameters of a ``slurm.conf`` text.

    Returns:
        One :class:`SlurmConfParam` per global ``Key=value`` line, in file order (a repeated key gives several
        records, as ``SlurmctldHost`` must). Node/partition lines and ``Include`` lines are skipped silently; a
        line that is not ``Key=value`` is an issue.

    """
    result: ParseResult[SlurmConfParam] = ParseResult()
    for no, line in _logical_lines(text):
        # "Include <file>" (slurm.conf(5) INCLUDE MODIFIERS): not followed by a pure parser.
        if line.split(None, 1)[0].lower() == "include":
            continue
        m = _PAIR.match(line)
        if m is None:
            result.skip(no, "expected Key=value", line)
            continue
        key = m.group(1).lower()
        if key in _MULTI_KEYS:
            continue
        value = m.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        result.records.append(SlurmConfParam(key, value, no))
    return result


def _port(text: str | None, default: int) -> int | None:
    if text is None or not text.strip():
        return default
    first = text.strip().split("-", 1)[0]
    if not first.isdigit() or not 0 < int(first) < 65536:
        return None
    return int(first)


def slurm_endpoints(params: list[SlurmConfParam]) -> ParseResult[Endpoint]:
    """Derive the slurmctld and slurmdbd endpoints from parsed parameters (rules in the module docstring).

    Returns:
        Endpoints in order primary slurmctld, backups, slurmdbd, slurmdbd backup. A ``SlurmctldHost`` value of
        the wrong shape or an invalid port is an issue (the endpoint is left out).

    """
    result: ParseResult[Endpoint] = ParseResult()
    last: dict[str, SlurmConfParam] = {}
    for p in params:
        last[p.key] = p
    ctld_port = _port(last["slurmctldport"].value if "slurmctldport" in last else None, DEFAULT_SLURMCTLD_PORT)
    if ctld_port is None:
        result.skip(last["slurmctldport"].line_no, "invalid SlurmctldPort", last["slurmctldport"].value)
    hosts: list[tuple[str, int]] = []
    for p in params:
        if p.key == "slurmctldhost":
            m = _HOST.match(p.value)
            if m is None:
                result.skip(p.line_no, "SlurmctldHost is not name[(address)]", p.value)
                continue
            hosts.append((m.group(2) or m.group(1), p.line_no))
    if not hosts:
        for machine, addr in (("controlmachine", "controladdr"), ("backupcontroller", "backupaddr")):
            if machine in last:
                host = last[addr].value if addr in last else last[machine].value
                hosts.append((host, last[machine].line_no))
    if ctld_port is not None:
        for i, (host, _) in enumerate(hosts):
            result.records.append(Endpoint("slurmctld" if i == 0 else f"slurmctld-backup{i}", host, ctld_port))
    storage = last.get("accountingstoragetype")
    if storage is not None and storage.value.strip().lower() == "accounting_storage/slurmdbd":
        p_port = last.get("accountingstorageport")
        dbd_port = _port(p_port.value if p_port else None, DEFAULT_SLURMDBD_PORT)
        if dbd_port is None:
            result.skip(
                p_port.line_no if p_port else 0, "invalid AccountingStoragePort", p_port.value if p_port else ""
            )
        else:
            # slurm.conf(5) states no default; SLURM's read_config.c falls back to DEFAULT_STORAGE_HOST
            # ("localhost").
            host = last["accountingstoragehost"].value if "accountingstoragehost" in last else "localhost"
            result.records.append(Endpoint("slurmdbd", host, dbd_port))
            if "accountingstoragebackuphost" in last:
                result.records.append(Endpoint("slurmdbd-backup", last["accountingstoragebackuphost"].value, dbd_port))
    return result
