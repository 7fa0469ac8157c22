"""Data-driven recommendations from finished jobs ("jobs like yours that wrote to local scratch failed N % less").

The seed promises "Data-driven defaults: Use localscratch -> +23% success rate". This module turns that into
statistics over the training store's finished jobs (the shared job table, :data:`nomade.analytics.traces.JOB_COLUMNS`,
plus the feature-vector columns of :mod:`nomade.analytics.job_vectors` when present).

Rules
=====
Each rule splits comparable jobs into two groups: ``with`` = jobs that follow the recommended practice, ``without``
= jobs that do not (the risky or wasteful behaviour). Jobs in neither group (a middle band, or missing data) are
left out. Jobs that never ran (``elapsed_s <= 0``: cancelled while pending) are left out of every rule: they had no
behaviour to judge. A rule whose columns are missing or all-NaN in the table yields nothing.

================  ==========  ==========================================================================================
key               kind        groups (``with`` vs ``without``)
================  ==========  ==========================================================================================
local_scratch     failure     among jobs that wrote ``total_write_gb >= 1``: ``nfs_ratio < 0.5`` (most bytes to local
                              disk) vs ``nfs_ratio >= 0.5`` (most bytes over NFS). Below 1 GB the destination of the
                              writes hardly loads the file server (threshold of the issue); 0.5 = "most of the bytes".
memory_headroom   failure     peak memory / request (``memory_efficiency``, else ``max_rss_bytes / req_mem_bytes``)
                              ``<= 0.8`` vs ``> 0.95``. SLURM samples MaxRSS every JobAcctGatherFrequency (30 s by
                              default, slurm.conf(5)), so a sampled peak above 95 % of the limit means the job very
                              likely touched the cgroup limit (OOM kill); 20 % headroom is the recommended margin.
                              Jobs in between are left out, so the two groups are clearly apart.
time_headroom     failure     ``elapsed_s / timelimit_s`` (elapsed from ``runtime_minutes`` when ``elapsed_s`` is
                              absent) ``<= 0.8`` vs ``>= 0.95``; unlimited jobs left out. SLURM kills a job at its
                              limit (plus OverTimeLimit), so part of the ``without`` failures are the timeouts
                              themselves: the message gives that TIMEOUT share. On traces where the limit was not
                              enforced (LANL CM-5, see ../shared/datasets/SOURCES.md) the comparison is a real one.
right_size_cpus   efficiency  among jobs with ``req_cpus >= 2``: ``cpu_efficiency >= 0.25`` vs ``< 0.25`` (CPU time
                              / (elapsed x allocated CPUs), DESIGN.md; fewer than one allocated core in four busy on
                              average -- our cut-off). Not a failure risk: the cost is idle allocation (core-hours)
                              and longer queue waits for everyone; the message says so.
gpu_use           efficiency  among jobs with ``req_gpus > 0``: ``used_gpu >= 0.5`` vs ``used_gpu < 0.5`` (GPUs
                              requested but not used). Not a failure risk: idle GPU-hours.
================  ==========  ==========================================================================================

Statistics
==========
* Failure rate of a group = failed / jobs (``failed``, else ``failure_class != "success"``; jobs with unknown
  outcome are left out), with a 95 % Wilson score interval (E. B. Wilson, "Probable inference, the law of
  succession, and statistical inference", JASA 22 (1927) 209-212), which stays inside [0, 1] and is sound for small
  counts and rates near 0, unlike the normal approximation.
* Difference: Fisher's exact test, two-sided, on the 2 x 2 table (``scipy.stats.fisher_exact``; exact, so valid
  at the small supports allowed here).
* Many rules x many users are tested in one call: the p-values of the failure rules of one :func:`assess` call are
  adjusted with Benjamini-Hochberg (``scipy.stats.false_discovery_control``; Benjamini & Hochberg, JRSS B 57 (1995)
  289-300), which keeps the expected share of false recommendations among those emitted at or below ``alpha``
  (default :data:`ALPHA` = 0.05).
* A failure rule is emitted only when both groups have at least ``min_support`` jobs, the adjusted p-value is
  ``<= alpha``, the recommended group fails less, and by at least ``min_difference`` (default 2 percentage points:
  on a large cluster a 0.3-point difference is significant but not worth a user's time).
* An efficiency rule is a count, not an inference: it is emitted when at least ``min_support`` jobs show the
  wasteful behaviour in the scope; both groups' failure rates are still reported, for information.

Scope ("comparable jobs")
=========================
For one user (``compute(jobs, user="alice")``) each failure rule uses the narrowest scope whose groups both reach
``min_support``: the user's own jobs, else the jobs of the partition the user ran most jobs in, else the whole
table. The scope is chosen from the supports alone, never from the p-values (no scope shopping). A rule answered
from a wider scope is shown to the user only when at least one of their own jobs is in the ``without`` group (it
concerns them). Efficiency rules use the user's own jobs only (it is their allocation). With ``user=None`` the
rules are evaluated cluster-wide (``user=""``) and, with ``per_user=True``, for every user on their own jobs only
(a wider scope would repeat the cluster-wide answer once per user).

Metrics (:data:`RECOMMEND_METRICS`, built by :func:`families`): ``nomade_recommendation_info{user,recommendation,
scope,message}``, ``nomade_recommendation_failure_rate{user,recommendation,group}``,
``nomade_recommendation_support_jobs{user,recommendation,group}`` and ``nomade_recommendation_p_value{user,
recommendation}``; ``user=""`` for cluster-wide ones. Cardinality: at most 7 series per emitted recommendation,
at most 5 recommendations per user and 5 cluster-wide.

This module imports only the metric declarations at import time (numpy, pandas and scipy are imported when
computing), so the metric catalog can list :data:`RECOMMEND_METRICS` cheaply.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from nomade.exporter.metrics import MetricSet, MetricSpec

if TYPE_CHECKING:
    import pandas as pd
    from prometheus_client.core import Metric

#: Level of the Benjamini-Hochberg false discovery rate over the failure rules of one call.
ALPHA = 0.05
#: Default minimum number of jobs in each group.
MIN_SUPPORT = 20
#: Smallest failure-rate difference (absolute, 0-1) worth a recommendation (display choice, see module doc).
MIN_DIFFERENCE = 0.02
#: z for the 95 % Wilson interval (two-sided normal quantile 0.975).
Z95 = 1.959963984540054

# Thresholds of the rules (justified in the module docstring).
WRITE_MIN_GB = 1.0
NFS_RATIO_SPLIT = 0.5
MEM_HEADROOM_MAX = 0.8
MEM_NEAR_LIMIT = 0.95
TIME_HEADROOM_MAX = 0.8
TIME_NEAR_LIMIT = 0.95
CPU_EFFICIENCY_MIN = 0.25
GPU_USED_MIN = 0.5

Kind = Literal["failure", "efficiency"]
Scope = Literal["user", "partition", "cluster"]
Status = Literal["emitted", "not_significant", "wrong_direction", "small_difference", "low_support", "no_data"]

RECOMMEND_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "nomade_recommendation_info",
        "info",
        "A data-driven recommendation (text in message); scope = user|partition|cluster: the jobs it was computed on; "
        'user="" for cluster-wide ones.',
        ("user", "recommendation", "scope", "message"),
    ),
    MetricSpec(
        "nomade_recommendation_failure_rate",
        "gauge",
        'Failure rate (0-1) of the finished jobs that follow the recommendation (group="with") or not '
        '(group="without"), in the recommendation\'s scope.',
        ("user", "recommendation", "group"),
        "ratio",
    ),
    MetricSpec(
        "nomade_recommendation_support_jobs",
        "gauge",
        'Finished jobs behind nomade_recommendation_failure_rate (group="with"|"without").',
        ("user", "recommendation", "group"),
    ),
    MetricSpec(
        "nomade_recommendation_p_value",
        "gauge",
        "Two-sided Fisher exact test p-value of the failure-rate difference (before the Benjamini-Hochberg "
        "adjustment used to decide emission).",
        ("user", "recommendation"),
    ),
)


@dataclass(frozen=True)
class Recommendation:
    """One rule's result for one user (or cluster-wide).

    Attributes:
        key: rule key (:data:`RULES`).
        kind: ``failure`` (the groups' failure rates differ) or ``efficiency`` (wasted allocation, not failure).
        user: whom it is for; ``""`` for cluster-wide.
        scope: jobs it was computed on: ``user`` (the user's own), ``partition`` (:attr:`partition`) or ``cluster``.
        message: one line with the numbers.
        with_jobs, without_jobs: support (finished jobs) of each group.
        with_failed, without_failed: failed jobs in each group.
        with_rate, without_rate: failure rates 0-1 (NaN for an empty group).
        with_ci, without_ci: 95 % Wilson intervals of the rates ((NaN, NaN) for an empty group).
        p_value: two-sided Fisher exact p-value; q_value: Benjamini-Hochberg adjusted (NaN for efficiency rules).
        user_jobs_without: the user's own jobs in the ``without`` group (None for cluster-wide).
        extra: rule-specific figures (``timeout_share_without``, ``wasted_core_hours``, ``idle_gpu_hours``,
            ``median_wait_with_s``, ``median_wait_without_s``, ``share_without``).

    """

    key: str
    kind: Kind
    user: str
    scope: Scope
    message: str
    with_jobs: int
    without_jobs: int
    with_failed: int
    without_failed: int
    with_rate: float
    without_rate: float
    with_ci: tuple[float, float]
    without_ci: tuple[float, float]
    p_value: float
    q_value: float = math.nan
    partition: str | None = None
    user_jobs_without: int | None = None
    extra: dict[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (NaN -> None)."""

        def clean(v: Any) -> Any:
            if isinstance(v, float) and not math.isfinite(v):
                return None
            if isinstance(v, tuple):
                return [clean(x) for x in v]
            if isinstance(v, dict):
                return {k: clean(x) for k, x in v.items()}
            return v

        return {k: clean(getattr(self, k)) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class RuleResult:
    """The outcome of one rule in one scope, emitted or not (so callers can say *why* nothing is shown).

    Attributes:
        status: ``emitted``; ``no_data`` (columns missing/all-NaN, or no eligible job); ``low_support`` (a group
            under ``min_support``); ``not_significant``; ``wrong_direction`` (the recommended group fails more);
            ``small_difference`` (significant but under ``min_difference``).
        recommendation: the figures (also for non-emitted results once both groups exist), else None.

    """

    key: str
    user: str
    status: Status
    recommendation: Recommendation | None = None
    reason: str = ""


# -- helpers --------------------------------------------------------------------------------------------------------


def wilson_interval(failed: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927).

    Args:
        failed: successes of the proportion (here: failed jobs), ``0 <= failed <= n``.
        n: trials (jobs).
        z: normal quantile (1.96 for 95 %).

    Returns:
        ``(low, high)`` within [0, 1]; ``(nan, nan)`` when ``n == 0``.

    Raises:
        ValueError: ``failed`` outside ``[0, n]`` or ``n < 0``.

    """
    if n < 0 or failed < 0 or failed > n:
        raise ValueError(f"wilson_interval: need 0 <= failed <= n, got failed={failed}, n={n}")
    if n == 0:
        return (math.nan, math.nan)
    p = failed / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))


def _pct(x: float) -> str:
    """A rate as the messages show it: ``4 %``, ``0.5 %``, ``19 %``."""
    if not math.isfinite(x):
        return "? %"
    v = 100 * x
    return f"{v:.1f} %" if 0 < v < 10 and round(v, 1) != round(v) else f"{v:.0f} %"


def _p_text(p: float) -> str:
    """``= 0.003``, ``< 1e-16`` (double precision cannot tell smaller p-values apart from rounding)."""
    if not math.isfinite(p):
        return "= ?"
    return "< 1e-16" if p < 1e-16 else f"= {p:.2g}"


def _num(df: pd.DataFrame, col: str) -> pd.Series | None:
    """Column as float, or None when missing or all-NaN (then the rule yields nothing)."""
    import pandas as pd

    if col not in df.columns:
        return None
    s = pd.to_numeric(df[col], errors="coerce").astype(float)
    return s if s.notna().any() else None


def _fill(primary: pd.Series | None, fallback: pd.Series | None) -> pd.Series | None:
    """``primary`` where finite, else ``fallback``; None when both are None."""
    if primary is None:
        return fallback
    if fallback is None:
        return primary
    return primary.where(primary.notna(), fallback)


def _ratio(num: pd.Series | None, den: pd.Series | None) -> pd.Series | None:
    import numpy as np

    if num is None or den is None:
        return None
    r = num / den.where(den > 0)
    r = r.replace([np.inf, -np.inf], np.nan)
    return r if r.notna().any() else None


def _elapsed(df: pd.DataFrame) -> pd.Series | None:
    runtime = _num(df, "runtime_minutes")
    return _fill(_num(df, "elapsed_s"), None if runtime is None else runtime * 60.0)


# -- rules ------------------------------------------------------------------------------------------------------------

Groups = tuple["pd.Series", "pd.Series"]


def _groups_local_scratch(df: pd.DataFrame) -> Groups | None:
    nfs, written = _num(df, "nfs_ratio"), _num(df, "total_write_gb")
    if nfs is None or written is None:
        return None
    eligible = (written >= WRITE_MIN_GB) & nfs.notna()
    return eligible & (nfs < NFS_RATIO_SPLIT), eligible & (nfs >= NFS_RATIO_SPLIT)


def _memory_ratio(df: pd.DataFrame) -> pd.Series | None:
    return _fill(_num(df, "memory_efficiency"), _ratio(_num(df, "max_rss_bytes"), _num(df, "req_mem_bytes")))


def _groups_memory_headroom(df: pd.DataFrame) -> Groups | None:
    r = _memory_ratio(df)
    if r is None:
        return None
    return r <= MEM_HEADROOM_MAX, r > MEM_NEAR_LIMIT


def _groups_time_headroom(df: pd.DataFrame) -> Groups | None:
    r = _ratio(_elapsed(df), _num(df, "timelimit_s"))
    if r is None:
        return None
    return r <= TIME_HEADROOM_MAX, r >= TIME_NEAR_LIMIT


def _cpu_efficiency(df: pd.DataFrame) -> pd.Series | None:
    elapsed, cpus = _elapsed(df), _num(df, "req_cpus")
    derived = None
    if elapsed is not None and cpus is not None:
        derived = _ratio(_num(df, "cpu_s"), elapsed * cpus)
    return _fill(_num(df, "cpu_efficiency"), derived)


def _groups_right_size_cpus(df: pd.DataFrame) -> Groups | None:
    eff, cpus = _cpu_efficiency(df), _num(df, "req_cpus")
    if eff is None or cpus is None:
        return None
    eligible = (cpus >= 2) & eff.notna()
    return eligible & (eff >= CPU_EFFICIENCY_MIN), eligible & (eff < CPU_EFFICIENCY_MIN)


def _groups_gpu_use(df: pd.DataFrame) -> Groups | None:
    used, gpus = _num(df, "used_gpu"), _num(df, "req_gpus")
    if used is None or gpus is None:
        return None
    eligible = (gpus > 0) & used.notna()
    return eligible & (used >= GPU_USED_MIN), eligible & (used < GPU_USED_MIN)


@dataclass(frozen=True)
class Rule:
    """A recommendation rule: how to split jobs into the ``with``/``without`` groups.

    Attributes:
        key: stable identifier (the ``recommendation`` label).
        kind: ``failure`` or ``efficiency``.
        groups: ``jobs -> (with_mask, without_mask)`` boolean Series, or None when the needed columns are absent.
        columns: the columns it reads (any of them may be missing; see the module docstring).

    """

    key: str
    kind: Kind
    groups: Callable[[pd.DataFrame], Groups | None]
    columns: tuple[str, ...]


RULES: tuple[Rule, ...] = (
    Rule("local_scratch", "failure", _groups_local_scratch, ("nfs_ratio", "total_write_gb")),
    Rule(
        "memory_headroom", "failure", _groups_memory_headroom, ("memory_efficiency", "max_rss_bytes", "req_mem_bytes")
    ),
    Rule("time_headroom", "failure", _groups_time_headroom, ("elapsed_s", "runtime_minutes", "timelimit_s")),
    Rule(
        "right_size_cpus", "efficiency", _groups_right_size_cpus, ("cpu_efficiency", "cpu_s", "elapsed_s", "req_cpus")
    ),
    Rule("gpu_use", "efficiency", _groups_gpu_use, ("used_gpu", "req_gpus")),
)
RULE_KEYS: tuple[str, ...] = tuple(r.key for r in RULES)
RULE_KINDS: dict[str, Kind] = {r.key: r.kind for r in RULES}


# -- messages ---------------------------------------------------------------------------------------------------------


def _scope_text(scope: Scope, user: str, partition: str | None) -> str:
    if scope == "user":
        return "among your jobs" if user else "among this user's jobs"
    if scope == "partition":
        return f"among jobs in partition {partition}"
    return "across the cluster"


def _message(key: str, scope_text: str, r: dict[str, Any]) -> str:
    counts = f"n = {r['with_jobs']:,} / {r['without_jobs']:,}"
    p = f"Fisher p {_p_text(r['p_value'])}"
    rates = f"{_pct(r['with_rate'])} vs {_pct(r['without_rate'])}"
    x = r["extra"]
    if key == "local_scratch":
        return (
            f"Write to local scratch instead of NFS: {scope_text}, jobs that wrote most of their data (>= 1 GB) to "
            f"local disk failed {_pct(r['with_rate'])} vs {_pct(r['without_rate'])} for jobs writing mostly over "
            f"NFS ({counts}; {p})"
        )
    if key == "memory_headroom":
        return (
            f"Request memory with headroom: {scope_text}, jobs whose peak stayed within 80 % of the memory request "
            f"failed {rates} for jobs above 95 % of it ({counts}; {p})"
        )
    if key == "time_headroom":
        return (
            f"Request a time limit with headroom: {scope_text}, jobs that ended within 80 % of their time limit "
            f"failed {rates} for jobs that reached 95 % of it ({counts}; {p})"
            + (
                f"; {_pct(x['timeout_share_without'])} of the latter were TIMEOUT (killed at the limit)"
                if "timeout_share_without" in x
                else ""
            )
        )
    if key == "right_size_cpus":
        return (
            f"Request fewer CPUs: {scope_text}, {r['without_jobs']:,} jobs ({_pct(x['share_without'])} of jobs with "
            f"2+ CPUs) used under 25 % of their allocated CPU time, leaving about "
            f"{x.get('wasted_core_hours', math.nan):,.0f} core-hours idle; this costs allocation and queue time, "
            f"not reliability (failure {_pct(r['without_rate'])} vs {_pct(r['with_rate'])} for right-sized jobs)"
        )
    if key == "gpu_use":
        return (
            f"Request GPUs only when the job uses them: {scope_text}, {r['without_jobs']:,} jobs "
            f"({_pct(x['share_without'])} of GPU jobs) requested GPUs without using them, about "
            f"{x.get('idle_gpu_hours', math.nan):,.0f} GPU-hours held idle; this costs allocation and queue time, "
            f"not reliability"
        )
    raise ValueError(f"unknown rule {key!r}")


# -- evaluation -------------------------------------------------------------------------------------------------------


def _outcome(df: pd.DataFrame) -> pd.Series:
    """Failed (1.0) / ok (0.0) / unknown (NaN) per job."""
    import numpy as np
    import pandas as pd

    if "failed" in df.columns:
        f = df["failed"]
        out = pd.Series(np.nan, index=df.index)
        known = f.notna()
        out[known] = f[known].astype(bool).astype(float)
        return out
    if "failure_class" in df.columns:
        fc = df["failure_class"]
        return pd.Series(np.where(fc.isna(), np.nan, (fc != "success").astype(float)), index=df.index)
    raise ValueError("jobs: needs a 'failed' or a 'failure_class' column")


def _ran(df: pd.DataFrame) -> pd.Series:
    """Jobs that ran (elapsed > 0); all jobs when no elapsed time is known at all."""
    import pandas as pd

    el = _elapsed(df)
    if el is None:
        return pd.Series(True, index=df.index)
    return el > 0


def _wait(df: pd.DataFrame) -> pd.Series | None:
    start, submit = _num(df, "start_time"), _num(df, "submit_time")
    if start is None or submit is None:
        return None
    w = start - submit
    return w.where(w >= 0)


def _median(s: pd.Series | None, mask: pd.Series) -> float:
    if s is None:
        return math.nan
    v = s[mask].dropna()
    return float(v.median()) if len(v) else math.nan


class _Derived:
    """Per-job figures the rules' extras need, computed once per :func:`assess` call (not once per user)."""

    def __init__(self, df: pd.DataFrame) -> None:
        self.wait = _wait(df)
        elapsed = _elapsed(df)
        eff, cpus, gpus = _cpu_efficiency(df), _num(df, "req_cpus"), _num(df, "req_gpus")
        self.idle_core_s = (
            None if elapsed is None or eff is None or cpus is None else cpus * elapsed * (1 - eff.clip(upper=1.0))
        )
        self.gpu_s = None if elapsed is None or gpus is None else gpus * elapsed
        fc = df["failure_class"] if "failure_class" in df.columns else None
        # the TIMEOUT share only where the data can say TIMEOUT at all (SWF traces have no such class)
        self.timeout = None if fc is None or not (fc == "timeout").any() else fc == "timeout"


def _figures(key: str, with_m: pd.Series, without_m: pd.Series, y: pd.Series, d: _Derived) -> dict[str, Any]:
    """Counts, rates, intervals, Fisher p and the rule's extra figures for one scope."""
    from scipy.stats import fisher_exact

    nw, nwo = int(with_m.sum()), int(without_m.sum())
    fw, fwo = int(y[with_m].sum()), int(y[without_m].sum())
    rw = fw / nw if nw else math.nan
    rwo = fwo / nwo if nwo else math.nan
    p = math.nan
    if nw and nwo:
        p = float(fisher_exact([[fw, nw - fw], [fwo, nwo - fwo]], alternative="two-sided").pvalue)
    extra: dict[str, float] = {}
    if key == "time_headroom" and nwo and d.timeout is not None:
        extra["timeout_share_without"] = float(d.timeout[without_m].sum() / nwo)
    if key in ("right_size_cpus", "gpu_use"):
        extra["share_without"] = nwo / (nw + nwo) if nw + nwo else math.nan
        extra["median_wait_with_s"] = _median(d.wait, with_m)
        extra["median_wait_without_s"] = _median(d.wait, without_m)
        if key == "right_size_cpus" and d.idle_core_s is not None:
            extra["wasted_core_hours"] = float(d.idle_core_s[without_m].sum() / 3600.0)
        if key == "gpu_use" and d.gpu_s is not None:
            extra["idle_gpu_hours"] = float(d.gpu_s[without_m].sum() / 3600.0)
    return dict(
        with_jobs=nw,
        without_jobs=nwo,
        with_failed=fw,
        without_failed=fwo,
        with_rate=rw,
        without_rate=rwo,
        with_ci=wilson_interval(fw, nw),
        without_ci=wilson_interval(fwo, nwo),
        p_value=p,
        extra={k: v for k, v in extra.items() if math.isfinite(v)},
    )


def _main_partition(df: pd.DataFrame, user_mask: pd.Series) -> str | None:
    if "partition" not in df.columns:
        return None
    parts = df.loc[user_mask, "partition"].dropna()
    if parts.empty:
        return None
    counts = parts.astype(str).value_counts()
    # most jobs first, then the name, so that ties are deterministic
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[0][0]


@dataclass
class _Pending:
    rule: Rule
    user: str
    scope: Scope
    partition: str | None
    figures: dict[str, Any]
    user_jobs_without: int | None


def assess(
    jobs: pd.DataFrame,
    user: str | None = None,
    min_support: int = MIN_SUPPORT,
    *,
    alpha: float = ALPHA,
    min_difference: float = MIN_DIFFERENCE,
    per_user: bool = True,
) -> list[RuleResult]:
    """Evaluate every rule of :data:`RULES` and say for each whether it is emitted and why not.

    Args:
        jobs: finished jobs (the shared job table, plus any vector columns); one row per job. Needs ``failed`` or
            ``failure_class``; every other column is optional (a rule missing its columns yields ``no_data``).
        user: evaluate for this user (scope user -> partition -> cluster, see the module docstring); ``None``:
            cluster-wide (``user=""``) plus, when ``per_user``, every user on their own jobs.
        min_support: minimum jobs in each group (failure rules) or in the ``without`` group (efficiency rules).
        alpha: Benjamini-Hochberg false discovery rate over the failure-rule tests of this call.
        min_difference: smallest failure-rate difference (0-1) that is emitted.
        per_user: with ``user=None``, also evaluate every user's own jobs.

    Returns:
        One :class:`RuleResult` per rule and evaluated user (cluster-wide first, then users by name).

    Raises:
        ValueError: ``jobs`` lacks both ``failed`` and ``failure_class``, or ``min_support < 1``, or ``alpha``
            outside (0, 1).

    """
    import numpy as np
    import pandas as pd
    from scipy.stats import false_discovery_control

    if min_support < 1:
        raise ValueError(f"min_support must be >= 1, got {min_support}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    y_all = _outcome(jobs)
    base = _ran(jobs) & y_all.notna()
    df = jobs[base.to_numpy()]
    y = y_all[base.to_numpy()]
    users = df["user"].astype(object) if "user" in df.columns else None

    results: list[RuleResult | _Pending] = []
    masks = {rule.key: rule.groups(df) for rule in RULES}
    derived = _Derived(df)

    def no_data(rule: Rule, who: str, why: str) -> RuleResult:
        return RuleResult(rule.key, who, "no_data", reason=why)

    def evaluate(rule: Rule, who: str, scopes: list[tuple[Scope, str | None, Any]], user_mask: Any) -> None:
        groups = masks[rule.key]
        if groups is None:
            results.append(no_data(rule, who, f"columns missing or empty: {', '.join(rule.columns)}"))
            return
        with_m, without_m = (g.fillna(False).astype(bool) for g in groups)
        if not (with_m | without_m).any():
            results.append(no_data(rule, who, "no job with the needed figures"))
            return
        affected = None if user_mask is None else int((without_m & user_mask).sum())
        chosen = None
        for scope, part, m in scopes:
            nw, nwo = int((with_m & m).sum()), int((without_m & m).sum())
            enough = nwo >= min_support if rule.kind == "efficiency" else min(nw, nwo) >= min_support
            if enough:
                chosen = (scope, part, m)
                break
        if chosen is None:
            scope, part, m = scopes[-1]
            figs = _figures(rule.key, with_m & m, without_m & m, y, derived)
            if figs["with_jobs"] + figs["without_jobs"] == 0:
                results.append(no_data(rule, who, "no job with the needed figures in scope"))
            else:
                rec = _build(rule, who, scope, part, figs, affected)
                need = "the without group" if rule.kind == "efficiency" else "each group"
                results.append(
                    RuleResult(
                        rule.key,
                        who,
                        "low_support",
                        rec,
                        f"{need} needs {min_support} jobs; have {figs['with_jobs']} / {figs['without_jobs']}",
                    )
                )
            return
        scope, part, m = chosen
        figs = _figures(rule.key, with_m & m, without_m & m, y, derived)
        if scope != "user" and user_mask is not None and not affected:
            rec = _build(rule, who, scope, part, figs, affected)
            results.append(RuleResult(rule.key, who, "no_data", rec, "none of the user's jobs shows this behaviour"))
            return
        results.append(_Pending(rule, who, scope, part, figs, affected))

    if user is None:
        everyone = np.ones(len(df), dtype=bool)
        for rule in RULES:
            evaluate(rule, "", [("cluster", None, everyone)], None)
        if per_user and users is not None:
            # factorize once: comparing an object column per user costs O(users x jobs) string compares
            codes, names = pd.factorize(users.map(lambda u: None if u is None or u != u else str(u)))
            for code, name in sorted(enumerate(names), key=lambda cn: cn[1]):
                um = codes == code
                for rule in RULES:
                    evaluate(rule, name, [("user", None, um)], um)
    else:
        if users is None or not (users == user).any():
            for rule in RULES:
                results.append(no_data(rule, user, f"no finished job of user {user!r} in the data"))
        else:
            um = (users == user).to_numpy()
            part = _main_partition(df, um)
            scopes: list[tuple[Scope, str | None, Any]] = [("user", None, um)]
            if part is not None:
                scopes.append(("partition", part, (df["partition"].astype(object) == part).to_numpy()))
            scopes.append(("cluster", None, np.ones(len(df), dtype=bool)))
            for rule in RULES:
                evaluate(rule, user, scopes if rule.kind == "failure" else scopes[:1], um)

    # Benjamini-Hochberg over the failure tests of this call
    tests = [r for r in results if isinstance(r, _Pending) and r.rule.kind == "failure"]
    ps = [r.figures["p_value"] for r in tests]
    qs = list(false_discovery_control(ps, method="bh")) if ps else []
    q_of = {id(r): float(q) for r, q in zip(tests, qs, strict=True)}

    out: list[RuleResult] = []
    for r in results:
        if isinstance(r, RuleResult):
            out.append(r)
            continue
        q = q_of.get(id(r), math.nan)
        rec = _build(r.rule, r.user, r.scope, r.partition, r.figures, r.user_jobs_without, q)
        if r.rule.kind == "efficiency":
            out.append(RuleResult(r.rule.key, r.user, "emitted", rec))
            continue
        diff = rec.without_rate - rec.with_rate
        if not q <= alpha:
            out.append(RuleResult(r.rule.key, r.user, "not_significant", rec, f"BH-adjusted p = {q:.2g} > {alpha}"))
        elif diff <= 0:
            out.append(RuleResult(r.rule.key, r.user, "wrong_direction", rec, "the recommended group fails more"))
        elif diff < min_difference:
            out.append(
                RuleResult(r.rule.key, r.user, "small_difference", rec, f"difference {diff:.3f} < {min_difference}")
            )
        else:
            out.append(RuleResult(r.rule.key, r.user, "emitted", rec))
    return out


def _build(
    rule: Rule,
    user: str,
    scope: Scope,
    partition: str | None,
    figs: dict[str, Any],
    affected: int | None,
    q: float = math.nan,
) -> Recommendation:
    text = _message(rule.key, _scope_text(scope, user, partition), figs)
    if affected is not None and scope != "user":
        text += f"; {affected:,} of your jobs are in the second group"
    return Recommendation(
        key=rule.key,
        kind=rule.kind,
        user=user,
        scope=scope,
        message=text,
        q_value=q,
        partition=partition if scope == "partition" else None,
        user_jobs_without=affected,
        **figs,
    )


def compute(
    jobs: pd.DataFrame,
    user: str | None = None,
    min_support: int = MIN_SUPPORT,
    *,
    alpha: float = ALPHA,
    min_difference: float = MIN_DIFFERENCE,
    per_user: bool = True,
) -> list[Recommendation]:
    """The emitted recommendations of :func:`assess` (same arguments, same errors).

    Returns:
        Recommendations, cluster-wide first then by user, each user's in :data:`RULES` order.

    """
    return [
        r.recommendation
        for r in assess(jobs, user, min_support, alpha=alpha, min_difference=min_difference, per_user=per_user)
        if r.status == "emitted" and r.recommendation is not None
    ]


def families(recs: Sequence[Recommendation]) -> list[Metric]:
    """The ``nomade_recommendation_*`` metric families (:data:`RECOMMEND_METRICS`) of ``recs``.

    Args:
        recs: recommendations (from :func:`compute`); NaN figures are omitted (absent beats wrong).

    Returns:
        ``prometheus_client`` families, empty ones left out.

    Raises:
        ValueError: two recommendations with the same ``(user, key)`` (they would overwrite each other's series).

    """
    ms = MetricSet(RECOMMEND_METRICS)
    seen: set[tuple[str, str]] = set()
    for r in recs:
        if (r.user, r.key) in seen:
            raise ValueError(f"duplicate recommendation {r.key!r} for user {r.user!r}")
        seen.add((r.user, r.key))
        ms.info("nomade_recommendation_info", user=r.user, recommendation=r.key, scope=r.scope, message=r.message)
        for group, rate, n in (("with", r.with_rate, r.with_jobs), ("without", r.without_rate, r.without_jobs)):
            ms.add("nomade_recommendation_failure_rate", rate, user=r.user, recommendation=r.key, group=group)
            ms.add("nomade_recommendation_support_jobs", n, user=r.user, recommendation=r.key, group=group)
        ms.add("nomade_recommendation_p_value", r.p_value, user=r.user, recommendation=r.key)
    return ms.families()
