"""``nomade targets``: Prometheus ``file_sd`` target lists of the node-mode exporters, from SLURM's node list.

Source: ``scontrol --oneliner show node`` parsed by :func:`nomade.exporter.parsers.scontrol.parse_nodes` (pure
parser, no I/O), run through :class:`~nomade.exporter.runner.CommandRunner` (argv list, timeout, ``LC_ALL=C``).

Output: the ``file_sd_config`` format (https://prometheus.io/docs/prometheus/latest/configuration/configuration/
#file_sd_config): a JSON list of ``{"targets": ["host:port"], "labels": {...}}`` groups. **Grouping choice: one group
per scrape target**, because the ``node`` label (= SLURM's NodeName, the join label of DESIGN.md) differs per target.
Labels of each group:

* ``node``: the NodeName (for several NodeNames on one host, the first in sorted order; see below);
* ``partition``: the node's partitions, sorted and comma-joined (``compute,short``). A node in several partitions
  is **one** target, never one per partition, so it is scraped once; select with a regex
  (``partition=~"(.*,)?gpu(,.*)?"``) or filter the file with ``--partition``;
* every ``--label k=v`` (``cluster=hpc1``...).

The target host is ``NodeHostName`` by default (``--host-field addr``: ``NodeAddr``; ``name``: ``NodeName``); an
unset or ``(null)`` field falls back to NodeAddr, then NodeName. Targets are deduplicated by ``host:port`` (several
NodeNames on one host, SLURM's multiple-slurmd setup, run one exporter there): the group keeps the first NodeName
and the union of partitions. Nodes in state ``FUTURE`` (declared, not yet existing) are left out. Groups are sorted by
node name, so the output is byte-stable for a given node list.

The file is written atomically (temporary file in the same directory, fsync, :func:`os.replace`), so Prometheus,
which re-reads file_sd files on change, never sees half a list; an unchanged list is not rewritten. Missing parent
directories of ``--out`` are created with mode 0755.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import re
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nomade.exporter.config import DEFAULT_PORT
from nomade.exporter.parsers.scontrol import NodeRecord, parse_nodes
from nomade.exporter.runner import CommandError, CommandRunner

NODES_ARGV: tuple[str, ...] = ("scontrol", "--oneliner", "show", "node")
FILE_SD_PATH = "/etc/prometheus/file_sd/nomade.json"
"""Where ``nomade targets --out`` should write on the Prometheus host (README, "Prometheus scrape configuration"):
the file that the ``file_sd_configs`` of the exporter job in ``nomade build``'s ``prometheus/scrape-nomade.yml``
reads (:func:`nomade.cli.build.scrape_yaml`)."""
HOST_FIELDS = {"hostname": "NodeHostName", "addr": "NodeAddr", "name": "NodeName"}
_LABEL_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_HOST_RE = re.compile(r"^[A-Za-z0-9_.:\-]+$")
RESERVED_LABELS = ("node", "partition")


class TargetsError(ValueError):
    """Invalid option (a label, a host) or no usable node list; the message says which."""


@dataclass(frozen=True)
class Target:
    """One scrape target.

    Attributes:
        address: ``host:port`` (IPv6 literals in brackets).
        node: SLURM NodeName (the ``node`` label).
        partitions: sorted partition names.

    """

    address: str
    node: str
    partitions: tuple[str, ...]


def _host_of(node: NodeRecord, host_field: str) -> str:
    for key in (HOST_FIELDS[host_field], "NodeAddr", "NodeName"):
        value = node.name if key == "NodeName" else node.fields.get(key, "")
        if value and value != "(null)":
            return value
    return node.name


def _address(host: str, port: int) -> str:
    if not _HOST_RE.match(host):
        raise TargetsError(f"host {host!r} is not a host name or address")
    try:
        if ipaddress.ip_address(host).version == 6:
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def build_targets(
    nodes: Iterable[NodeRecord],
    *,
    port: int = DEFAULT_PORT,
    partitions: Sequence[str] = (),
    host_field: str = "hostname",
) -> list[Target]:
    """Targets from parsed node records (pure function).

    Args:
        nodes: records of :func:`~nomade.exporter.parsers.scontrol.parse_nodes`.
        port: the exporter's port (default 9866, :data:`nomade.exporter.config.DEFAULT_PORT`).
        partitions: keep only nodes in one of these partitions (empty: all nodes).
        host_field: ``hostname`` (NodeHostName), ``addr`` (NodeAddr) or ``name`` (NodeName).

    Returns:
        One target per distinct ``host:port``, sorted by node name.

    Raises:
        TargetsError: a host that is not a host name or address, or an unknown ``host_field``.

    """
    if host_field not in HOST_FIELDS:
        raise TargetsError(f"host_field must be one of {', '.join(HOST_FIELDS)}")
    wanted = set(partitions)
    by_address: dict[str, tuple[str, set[str]]] = {}
    for node in sorted(nodes, key=lambda n: n.name):
        if node.state == "future":
            continue
        if wanted and not wanted & set(node.partitions):
            continue
        address = _address(_host_of(node, host_field), port)
        _, parts = by_address.setdefault(address, (node.name, set()))
        parts.update(node.partitions)
    targets = [Target(addr, name, tuple(sorted(parts))) for addr, (name, parts) in by_address.items()]
    return sorted(targets, key=lambda t: (t.node, t.address))


def parse_labels(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` to a dict of extra target labels.

    Raises:
        TargetsError: not ``k=v``, not a Prometheus label name, a reserved ``__`` name, ``node``/``partition``
            (set by this command), or a name given twice.

    """
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not _LABEL_RE.match(key):
            raise TargetsError(f"--label {item!r}: expected NAME=VALUE with a Prometheus label name")
        if key.startswith("__") or key in RESERVED_LABELS:
            raise TargetsError(f"--label {key}: reserved label name")
        if key in out:
            raise TargetsError(f"--label {key} given twice")
        out[key] = value
    return out


def render_file_sd(targets: Sequence[Target], labels: dict[str, str] | None = None) -> str:
    """The file_sd JSON document (one group per target, keys sorted, 2-space indent, final newline)."""
    groups = [
        {"labels": {**(labels or {}), "node": t.node, "partition": ",".join(t.partitions)}, "targets": [t.address]}
        for t in targets
    ]
    return json.dumps(groups, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def make_parents(directory: Path, mode: int = 0o755) -> list[Path]:
    """Create ``directory`` and its missing ancestors, each with exactly ``mode`` (default 0755).

    :meth:`pathlib.Path.mkdir` with ``parents=True`` gives the intermediate directories the umask's mode and only
    the last one ``mode & ~umask``; here every directory created is ``chmod``-ed to ``mode`` (Prometheus, running as
    its own user, must be able to traverse ``/etc/prometheus/file_sd``). Existing directories are left untouched.

    Returns:
        the directories created, outermost first (empty when ``directory`` already existed).

    Raises:
        OSError: a directory cannot be created (permission denied, a path component is a file, ...).

    """
    directory = Path(directory)
    missing: list[Path] = []
    d = directory
    while not d.exists() and d != d.parent:
        missing.append(d)
        d = d.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir(mode)
        except FileExistsError:  # made concurrently (another nomade targets run): fine if it is a directory
            if not d.is_dir():
                raise
            continue
        os.chmod(d, mode)
        created.append(d)
    return created


def write_atomic(path: Path, text: str) -> bool:
    """Write ``text`` to ``path`` through a temporary file and :func:`os.replace` (mode 0644).

    Missing parent directories are created first, mode 0755 (:func:`make_parents`), so
    ``--out /etc/prometheus/file_sd/nomade.json`` (:data:`FILE_SD_PATH`) works on a fresh Prometheus host.

    Returns:
        ``False`` when ``path`` already held exactly ``text`` (nothing written), else ``True``.

    Raises:
        OSError: the directory cannot be created or is not writable.

    """
    path = Path(path)
    try:
        if path.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    make_parents(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return True


# -- command line ------------------------------------------------------------------------------------------------


def _port(text: str) -> int:
    value = int(text)
    if not 0 < value < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {text}")
    return value


def add_options(p: argparse.ArgumentParser) -> None:
    """Options of ``nomade targets``."""
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help=f"file_sd JSON file to write atomically (default stdout); the scrape-nomade.yml of `nomade build` reads "
        f"{FILE_SD_PATH}",
    )
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"exporter port (default {DEFAULT_PORT})")
    p.add_argument(
        "--partition", action="append", default=[], metavar="P", help="only nodes in partition P (repeatable)"
    )
    p.add_argument(
        "--label", action="append", default=[], metavar="K=V", help="extra label on every target (repeatable)"
    )
    p.add_argument(
        "--host-field",
        choices=tuple(HOST_FIELDS),
        default="hostname",
        help="target host: NodeHostName (default), NodeAddr or NodeName",
    )
    p.add_argument(
        "--from-file",
        type=Path,
        metavar="FILE",
        help="read saved `scontrol --oneliner show node` output instead of running scontrol",
    )
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS", help="scontrol timeout (default 30)")


def run(args: argparse.Namespace, runner: CommandRunner | None = None) -> int:
    """Run ``nomade targets``: 0 on success, 1 when the node list is unavailable or empty, 2 for bad options.

    An empty result writes nothing (an empty file_sd list would make Prometheus drop every target). The message
    says ``no nodes in <file>`` when the node list has no node at all, ``no nodes matched`` when the filters
    (``--partition``, FUTURE nodes left out) removed them all.
    """
    try:
        labels = parse_labels(args.label)
    except TargetsError as exc:
        print(f"nomade targets: {exc}", file=sys.stderr)
        return 2
    try:
        if args.from_file is not None:
            text = Path(args.from_file).read_text()
        else:
            runner = runner or CommandRunner(timeout=args.timeout, ttl=0.0)
            text = runner.run(NODES_ARGV, timeout=args.timeout, ttl=0.0).stdout
    except (OSError, CommandError) as exc:
        print(f"nomade targets: cannot read the node list: {exc}", file=sys.stderr)
        return 1
    parsed = parse_nodes(text)
    for issue in parsed.issues[:5]:
        print(f"nomade targets: skipped line {issue.line_no}: {issue.reason}", file=sys.stderr)
    try:
        targets = build_targets(parsed.records, port=args.port, partitions=args.partition, host_field=args.host_field)
    except TargetsError as exc:
        print(f"nomade targets: {exc}", file=sys.stderr)
        return 1
    if not targets:
        # an empty list would make Prometheus drop every target: keep the previous file instead
        source = str(args.from_file) if args.from_file is not None else f"the output of {' '.join(NODES_ARGV)}"
        # no record at all: nothing was filtered out, the node list itself is empty (or every line was unparsable)
        why = f"no nodes in {source}" if not parsed.records else "no nodes matched"
        print(f"nomade targets: {why}; nothing written", file=sys.stderr)
        return 1
    doc = render_file_sd(targets, labels)
    if args.out is None:
        sys.stdout.write(doc)
        return 0
    try:
        changed = write_atomic(args.out, doc)
    except OSError as exc:
        print(f"nomade targets: cannot write {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"nomade targets: {len(targets)} target(s) {'written to' if changed else 'unchanged in'} {args.out}")
    return 0
