"""``nomade recommend --user NAME``: data-driven recommendations for one user, and the cluster-wide ones.

Usage::

    nomade recommend --user alice                          # read the published metrics from Prometheus
    nomade recommend --user alice --store jobs.sqlite      # compute from the training store instead
    nomade recommend --user alice --prometheus URL --store jobs.sqlite   # Prometheus, the store as fallback
    nomade recommend --user alice --format json

Sources:

* **Prometheus** (default; ``--prometheus URL``, else ``$NOMADE_PROMETHEUS_URL``, else ``http://127.0.0.1:9090``,
  as ``nomade status``): the ``nomade_recommendation_*`` series that the analytics service publishes after each
  retrain (:mod:`nomade.analytics.recommend`), read in **one** query whatever the number of users (DESIGN.md
  principle 6): the user's series, the cluster-wide ones (``user=""``) and a count of all published
  recommendations (to tell "nothing published" from "nothing for this user").
* **Store** (``--store FILE``): :func:`nomade.analytics.recommend.assess` on the store's finished jobs, for the
  user (scope user -> their partition -> cluster) and cluster-wide; also says why each rule gave nothing.
  With both options, Prometheus is asked first and the store is used when Prometheus is unreachable, rejects the
  query, or publishes no recommendation at all.

Exit status: 0 answered (recommendations printed, or a reasoned "nothing significant"); 1 the source is unavailable
(Prometheus unreachable or rejecting the query without a store to fall back to; store missing or unreadable);
2 usage error (bad option or URL); 3 no data to answer from (no recommendation published and no store; a store
without finished jobs).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TextIO

EXIT_OK = 0
EXIT_UNAVAILABLE = 1
EXIT_USAGE = 2
EXIT_NO_DATA = 3

RECOMMEND_NAMES = (
    "nomade_recommendation_info",
    "nomade_recommendation_failure_rate",
    "nomade_recommendation_support_jobs",
    "nomade_recommendation_p_value",
)


def _positive_float(text: str) -> float:
    v = float(text)
    if not v > 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {text}")
    return v


def _positive_int(text: str) -> int:
    v = int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1: {text}")
    return v


def add_options(p: argparse.ArgumentParser) -> None:
    """The options of ``nomade recommend`` (see the module docstring)."""
    from .main import DEFAULT_PROMETHEUS_URL, PROMETHEUS_URL_ENV

    p.add_argument("--user", required=True, help="the user to advise (SLURM user name as in the job records)")
    p.add_argument("--store", type=Path, metavar="FILE", help="SQLite training store: compute from its finished jobs")
    p.add_argument(
        "--prometheus",
        "--prometheus.url",
        dest="prometheus",
        metavar="URL",
        help=f"Prometheus (or compatible) query endpoint (default: ${PROMETHEUS_URL_ENV} or {DEFAULT_PROMETHEUS_URL};"
        " not asked when only --store is given)",
    )
    p.add_argument(
        "--timeout", type=_positive_float, default=10.0, metavar="SECONDS", help="seconds per query (default 10)"
    )
    p.add_argument("--cluster", help="only this cluster's series (Prometheus) or rows (store)")
    p.add_argument("--format", choices=("text", "json"), default="text", help="output format (default text)")
    p.add_argument(
        "--min-support",
        type=_positive_int,
        default=20,
        metavar="N",
        help="store only: jobs needed in each compared group (default 20)",
    )


# -- Prometheus ------------------------------------------------------------------------------------------------------


def recommend_query(user: str, cluster: str | None = None) -> str:
    """The one PromQL query: the user's and the cluster-wide series, plus a count of all published recommendations.

    ``user=""`` matches the cluster-wide series (Prometheus treats an empty matcher as "label absent or empty").
    The count part is tagged ``stat="published"`` with ``label_replace`` so the fold tells it apart.
    """
    from .status import _promql_string

    names = "|".join(RECOMMEND_NAMES)
    cm = "" if cluster is None else f", cluster={_promql_string(cluster)}"

    def sel(u: str) -> str:
        return f'{{__name__=~"{names}", user={_promql_string(u)}{cm}}}'

    info = f'{{__name__="nomade_recommendation_info"{cm}}}'
    return f'{sel(user)} or {sel("")} or label_replace(count({info}), "stat", "published", "", "")'


def fold_samples(samples: Iterable[Any], user: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], int]:
    """Published series -> (the user's recommendations, the cluster-wide ones, number published in all).

    Each recommendation is a dict with ``key, kind, user, scope, message, with_rate, without_rate, with_jobs,
    without_jobs, p_value`` (None where a series is absent). Only recommendations with an info series are kept.
    """
    from nomade.analytics.recommend import RULE_KINDS

    recs: dict[tuple[str, str], dict[str, Any]] = defaultdict(dict)
    published = 0
    for s in samples:
        lb = s.labels
        if lb.get("stat") == "published" and "__name__" not in lb:
            published = round(s.value) if math.isfinite(s.value) else 0
            continue
        who, key = lb.get("user", ""), lb.get("recommendation", "")
        if not key or who not in (user, ""):
            continue
        d = recs[(who, key)]
        name = lb.get("__name__", "")
        v = s.value if math.isfinite(s.value) else None
        if name == "nomade_recommendation_info":
            d["scope"] = lb.get("scope", "")
            d["message"] = lb.get("message", "")
        elif name == "nomade_recommendation_failure_rate" and lb.get("group") in ("with", "without"):
            d[f"{lb['group']}_rate"] = v
        elif name == "nomade_recommendation_support_jobs" and lb.get("group") in ("with", "without"):
            d[f"{lb['group']}_jobs"] = None if v is None else round(v)
        elif name == "nomade_recommendation_p_value":
            d["p_value"] = v
    mine, cluster_wide = [], []
    order = list(RULE_KINDS)
    for (who, key), d in sorted(recs.items(), key=lambda kv: (kv[0][1] not in order, _index(order, kv[0][1]), kv[0])):
        if "message" not in d:
            continue  # figures without their info series: a half-written scrape, not a recommendation
        rec = {
            "key": key,
            "kind": RULE_KINDS.get(key, ""),
            "user": who,
            "scope": d.get("scope", ""),
            "message": d["message"],
            **{f: d.get(f) for f in ("with_rate", "without_rate", "with_jobs", "without_jobs", "p_value")},
        }
        (mine if who == user and who != "" else cluster_wide).append(rec)
    return mine, cluster_wide, published


def _index(seq: list[str], x: str) -> int:
    return seq.index(x) if x in seq else len(seq)


# -- output ----------------------------------------------------------------------------------------------------------


def _rate(v: float | None) -> str:
    return "?" if v is None or not math.isfinite(v) else f"{v * 100:.1f} %"


def _figures_line(r: dict[str, Any]) -> str:
    parts = [
        f"followed: {_rate(r.get('with_rate'))} failed of {_count(r.get('with_jobs'))} jobs",
        f"not followed: {_rate(r.get('without_rate'))} failed of {_count(r.get('without_jobs'))} jobs",
        f"scope {r.get('scope') or '?'}",
    ]
    if r.get("kind") == "efficiency":
        parts.append("an efficiency advice, not a failure risk")
    return "; ".join(parts)


def _count(v: int | None) -> str:
    return "?" if v is None else f"{v:,}"


def render_text(result: dict[str, Any]) -> str:
    """The text report of a result dict (see :func:`run`)."""
    from .status import sanitize

    user = sanitize(result["user"])
    src = result["source"]
    where = result.get("prometheus_url") if src == "prometheus" else result.get("store")
    lines = [f"Recommendations for {user} (from {src} {sanitize(str(where))}):"]
    if result.get("note"):
        lines.append(f"  note: {sanitize(result['note'])}")
    for title, recs, empty in (
        (f"For {user}:", result["user_recommendations"], result.get("user_empty", "")),
        ("Cluster-wide:", result["cluster_recommendations"], result.get("cluster_empty", "")),
    ):
        lines.append(f"  {title}")
        if not recs:
            lines.append(f"    {sanitize(empty)}")
        for r in recs:
            lines.append(f"    * {sanitize(r['message'])}")
            lines.append(f"      {_figures_line(r)}")
    rules = result.get("rules")
    if rules and not result["user_recommendations"]:
        lines.append("  Why nothing for you, rule by rule:")
        for r in rules:
            lines.append(
                f"    {r['key']}: {r['status'].replace('_', ' ')}" + (f" ({r['reason']})" if r["reason"] else "")
            )
    return "\n".join(lines) + "\n"


# -- sources ---------------------------------------------------------------------------------------------------------


def _from_prometheus(args: argparse.Namespace, url: str) -> tuple[dict[str, Any] | None, str]:
    """Result from Prometheus, or ``(None, why)`` when it cannot answer (the caller may fall back)."""
    from nomade.analytics.promapi import PrometheusClient, PrometheusUnavailable, PromQLError

    client = PrometheusClient(url, timeout=args.timeout, retries=1, backoff=0.5)  # ValueError: bad URL
    try:
        with client:
            samples = client.query(recommend_query(args.user, args.cluster))
    except PrometheusUnavailable as exc:
        return None, f"Prometheus unavailable at {client.base_url}: {exc}"
    except PromQLError as exc:
        return None, f"Prometheus at {client.base_url} rejected the query: {exc}"
    mine, cluster_wide, published = fold_samples(samples, args.user)
    if published == 0 and not mine and not cluster_wide:
        return None, f"no nomade_recommendation_* series in Prometheus at {client.base_url}"
    return {
        "user": args.user,
        "source": "prometheus",
        "prometheus_url": client.base_url,
        "published": published,
        "user_recommendations": mine,
        "cluster_recommendations": cluster_wide,
        "user_empty": "nothing significant for this user in the published recommendations (the service publishes"
        " per-user ones only where the user's own jobs support them)",
        "cluster_empty": "no cluster-wide recommendation published",
    }, ""


def _from_store(args: argparse.Namespace) -> tuple[dict[str, Any] | None, str, int]:
    """Result computed from the store, or ``(None, why, exit status)``."""
    import sqlite3

    from nomade.analytics.jobs_store import JobsStore, JobsStoreError
    from nomade.analytics.recommend import assess

    path: Path = args.store
    if not path.is_file():
        return None, f"no such store: {path}", EXIT_UNAVAILABLE
    try:
        with JobsStore(path) as store:
            jobs = store.load(cluster=args.cluster)
    except (JobsStoreError, sqlite3.Error) as exc:
        return None, f"cannot read store {path}: {exc}", EXIT_UNAVAILABLE
    if jobs.empty:
        where = f" of cluster {args.cluster}" if args.cluster else ""
        return None, f"no finished jobs{where} in store {path}", EXIT_NO_DATA
    mine = assess(jobs, args.user, args.min_support)
    cluster_wide = assess(jobs, None, args.min_support, per_user=False)

    def emitted(results: list) -> list[dict[str, Any]]:
        return [r.recommendation.as_dict() for r in results if r.status == "emitted"]

    has_user = not all(r.status == "no_data" and r.reason.startswith("no finished job of user") for r in mine)
    return (
        {
            "user": args.user,
            "source": "store",
            "store": str(path),
            "jobs": len(jobs),
            "user_recommendations": emitted(mine),
            "cluster_recommendations": emitted(cluster_wide),
            "user_empty": (
                "nothing significant in this user's jobs or in comparable ones"
                if has_user
                else "no finished job of this user in the store"
            ),
            "cluster_empty": "nothing significant across the cluster",
            "rules": [{"key": r.key, "status": r.status, "reason": r.reason} for r in mine],
        },
        "",
        EXIT_OK,
    )


def run(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run ``nomade recommend``; returns the exit status (module docstring)."""
    from .main import DEFAULT_PROMETHEUS_URL, PROMETHEUS_URL_ENV

    out = out or sys.stdout
    err = err or sys.stderr
    use_prom = args.prometheus is not None or args.store is None
    result: dict[str, Any] | None = None
    why = ""
    status = EXIT_OK
    if use_prom:
        url = args.prometheus or os.environ.get(PROMETHEUS_URL_ENV) or DEFAULT_PROMETHEUS_URL
        try:
            result, why = _from_prometheus(args, url)
        except ValueError as exc:
            print(f"nomade recommend: {exc}", file=err)
            return EXIT_USAGE
        if result is None:
            status = EXIT_NO_DATA if why.startswith("no nomade_recommendation") else EXIT_UNAVAILABLE
    if result is None and args.store is not None:
        fallback_note = why
        result, why, status = _from_store(args)
        if result is not None and fallback_note:
            result["note"] = f"{fallback_note}; computed from the store instead"
    if result is None:
        hint = "" if args.store is not None else " (give --store FILE to compute from the training store)"
        print(f"nomade recommend: {why}{hint}", file=err)
        return status
    if args.format == "json":
        out.write(json.dumps(result, indent=2, sort_keys=True, allow_nan=False) + "\n")
    else:
        out.write(render_text(result))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m nomade.cli.recommend ARGS`` (the same as ``nomade recommend ARGS``)."""
    p = argparse.ArgumentParser(prog="nomade recommend")
    add_options(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
