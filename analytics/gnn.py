"""GraphSAGE failure-risk model over the leakage-free job-similarity graph (issue 5).

Model
=====
Two ``torch_geometric.nn.SAGEConv`` layers with mean aggregation (Hamilton, Ying & Leskovec 2017, "Inductive
Representation Learning on Large Graphs", NeurIPS; eq. 1 with the "mean aggregator" and the root weight), ReLU and
dropout after each, then a linear head to one logit::

    h1_i = ReLU(W1_r x_i + W1_n mean_{j -> i} [x_j, y_j])
    h2_i = ReLU(W2_r h1_i + W2_n mean_{j -> i} h1_j)
    logit_i = w . h2_i + b

* **Graph** (:mod:`nomade.analytics.similarity`): edges ``j -> i`` from each job's k nearest jobs (cosine similarity of
  standardised features) among the jobs that ENDED strictly before ``i`` was submitted. SAGEConv's mean aggregator
  ignores the edge weights (the cosine similarities only choose the neighbours).
* **Node features** ``x``: the training-fitted :class:`~nomade.analytics.similarity.Standardiser` output (median
  imputation, z-score, clipped at +-5 sd). A node's own label never enters its own features or its own hidden states.
* **Neighbour outcomes as messages** (``label_messages=True``, default): the first layer's source side is
  ``[x_j, y_j]`` (the neighbour's outcome), the target side only ``x_i`` (SAGEConv with ``in_channels=(d + 1, d)``).
  That is leakage-free: ``j -> i`` exists only if ``end_j < submit_i``, so ``y_j`` was known when ``i`` was submitted,
  and since ``end_i >= submit_i > end_j >= submit_j`` no path of the time-ordered graph leads from ``i`` back into
  ``i`` or into any job submitted before ``i`` ended (the tests flip one label and check exactly that). It lets the
  GNN use the outcome mix of similar past jobs (the signal of :class:`~nomade.analytics.similarity.KnnRisk`) jointly
  with the features. ``label_messages=False`` gives the purely feature-based GraphSAGE.
* **Training**: full batch on the training graph, class-weighted BCE (``pos_weight = n_negative / n_positive``, the
  "balanced" weighting of sklearn's ``class_weight``), Adam (Kingma & Ba 2015), fixed seed (``torch.random.fork_rng``:
  the caller's global RNG is left alone), CPU; the caller sets ``torch.set_num_threads``. Early stopping on the
  calibration slice's AUC-ROC (evaluated every ``eval_every`` epochs, stop after ``patience`` epochs without
  improvement, best weights restored) when ``X_cal``/``y_cal`` are given, else ``max_epochs``.
* **Inductive scoring**: a new job becomes a node with edges from its k nearest indexed (training) jobs, restricted to
  those that ended before its submit when ``submit_time`` is given; the network runs on the union graph. New nodes
  have no outgoing edges, so jobs scored together never influence one another.
* **Calibration**: :class:`~nomade.analytics.similarity.ScoreCalibrator` on the calibration slice (isotonic, Platt
  below ``MIN_ISOTONIC`` jobs: the rule of ``models.CalibratedGBM``) applied to the class-weight-corrected network
  output (:meth:`GraphSageRisk.raw_score`), which is what is returned when there is no usable calibration slice. The
  same slice also chose the stopping epoch, so its calibration is slightly optimistic; the test period is untouched.
* **Cost**: one epoch is O(E d h) with E = k n edges, memory O(E + n h). Measured with 2 torch threads on a shared
  2-core machine: LANL CM-5 fit slice (68,332 jobs, 27 submit-time features, k = 10, 683k edges, hidden 32) graph
  23 s + training with early stopping 62 s; 100,000 LANL jobs (1.0 M edges) graph 46 s and 0.75 s per full-batch
  epoch (100 epochs: 121 s in all); scoring 20,000 new jobs 6 s. Above ``max_train_nodes`` only the most recently
  submitted jobs are kept, which bounds time and memory.
* **Pickling**: the state dict (as numpy arrays) and the hyper-parameters are stored and the network is rebuilt on
  unpickling, so a model registry can save the fitted model with :mod:`pickle`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch_geometric.nn import SAGEConv

from .similarity import DEFAULT_K, OVERFETCH, KnnRisk, ScoreCalibrator, SimilarityIndex, network_metrics

#: Training nodes above this count are cut to the most recently submitted ones (bounded cost).
MAX_TRAIN_NODES = 200_000


class _SageNet(torch.nn.Module):
    """Two SAGEConv layers (first one optionally with the neighbour's outcome on the source side) + linear head."""

    def __init__(self, in_dim: int, hidden: int, dropout: float, label_messages: bool) -> None:
        super().__init__()
        self.label_messages = label_messages
        src = in_dim + 1 if label_messages else in_dim
        self.conv1 = SAGEConv((src, in_dim), hidden, aggr="mean")
        self.conv2 = SAGEConv(hidden, hidden, aggr="mean")
        self.head = torch.nn.Linear(hidden, 1)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, y_src: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        xs = torch.cat([x, y_src[:, None]], dim=1) if self.label_messages else x
        h = torch.relu(self.conv1((xs, x), edge_index))
        h = torch.nn.functional.dropout(h, self.dropout, self.training)
        h = torch.relu(self.conv2(h, edge_index))
        h = torch.nn.functional.dropout(h, self.dropout, self.training)
        return self.head(h).squeeze(-1)


class GraphSageRisk:
    """RiskModel: GraphSAGE over the leakage-free kNN job graph, inductive, calibrated (see the module docstring).

    Args:
        k: neighbours per job (graph degree).
        hidden: hidden units of both layers.
        dropout: dropout probability after each layer.
        lr: Adam learning rate.
        weight_decay: Adam L2 penalty.
        max_epochs: upper bound on full-batch epochs.
        patience: epochs without calibration-AUC improvement before stopping.
        eval_every: epochs between early-stopping evaluations.
        label_messages: pass neighbours' outcomes as messages (leakage-free, see the module docstring).
        max_train_nodes: cap on training nodes (most recent kept).
        seed: torch seed of initialisation and dropout.

    After :meth:`fit`: ``epochs_`` (epochs run), ``best_epoch_``, ``fit_seconds_``, ``n_train_``, ``n_edges_``.

    """

    name = "gnn"

    def __init__(
        self,
        k: int = DEFAULT_K,
        hidden: int = 32,
        dropout: float = 0.2,
        lr: float = 0.01,
        weight_decay: float = 5e-4,
        max_epochs: int = 200,
        patience: int = 30,
        eval_every: int = 5,
        label_messages: bool = True,
        max_train_nodes: int = MAX_TRAIN_NODES,
        seed: int = 0,
    ) -> None:
        if k < 1 or hidden < 1 or max_epochs < 1 or eval_every < 1:
            raise ValueError("k, hidden, max_epochs and eval_every must be >= 1")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.k = k
        self.hidden = hidden
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.max_epochs = max_epochs
        self.patience = patience
        self.eval_every = eval_every
        self.label_messages = label_messages
        self.max_train_nodes = max_train_nodes
        self.seed = seed
        self.index: SimilarityIndex | None = None
        self.calibrator = ScoreCalibrator()
        self._net: _SageNet | None = None
        self._x: np.ndarray | None = None  # (n, d) float32 standardised training features
        self._y: np.ndarray | None = None  # (n,) float32 training outcomes
        self._edges: np.ndarray | None = None  # (2, E) int64 training graph
        self.in_dim_ = 0
        self.pos_weight_ = 1.0

    # ------------------------------------------------------------------------------------------------ internals
    def _build_net(self) -> _SageNet:
        return _SageNet(self.in_dim_, self.hidden, self.dropout, self.label_messages)

    def _union(
        self, X: pd.DataFrame | np.ndarray, submit_time: np.ndarray | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        """Training graph + new nodes with edges from their k nearest allowed training jobs (neighbour -> job)."""
        if self.index is None or self._x is None or self._y is None or self._edges is None:
            raise RuntimeError("GraphSageRisk is not fitted")
        n = len(self._x)
        xn = self.index.standardiser.transform(X).astype(np.float32)
        idx, _ = self.index.query(X, self.k, submit_time=submit_time)
        tgt, col = np.nonzero(idx >= 0)
        new_edges = np.vstack([idx[tgt, col], tgt + n]).astype(np.int64)
        x = torch.from_numpy(np.concatenate([self._x, xn]))
        y = torch.from_numpy(np.concatenate([self._y, np.zeros(len(xn), np.float32)]))
        ei = torch.from_numpy(np.concatenate([self._edges, new_edges], axis=1))
        return x, y, ei, n

    def _logits(self, X: pd.DataFrame | np.ndarray, submit_time: np.ndarray | None) -> np.ndarray:
        if self._net is None:
            raise RuntimeError("GraphSageRisk is not fitted")
        x, y, ei, n = self._union(X, submit_time)
        self._net.eval()
        with torch.no_grad():
            return self._net(x, y, ei)[n:].numpy().astype(float)

    # ------------------------------------------------------------------------------------------------ public API
    def fit(
        self,
        X: pd.DataFrame,
        y: np.ndarray,
        *,
        submit_time: np.ndarray,
        end_time: np.ndarray,
        X_cal: pd.DataFrame | None = None,
        y_cal: np.ndarray | None = None,
        cal_submit_time: np.ndarray | None = None,
    ) -> GraphSageRisk:
        """Build the leakage-free training graph, train full batch, early-stop and calibrate on the calibration slice.

        Args:
            X: training features (n, d) of finished jobs.
            y: outcomes (n,) 0/1.
            submit_time: (n,) submit times, Unix s.
            end_time: (n,) end times, Unix s.
            X_cal: calibration slice (later in time) for early stopping and calibration; optional.
            y_cal: its outcomes 0/1.
            cal_submit_time: submit times of the calibration rows (time rule for their neighbours); default: every
                training job may be a neighbour (``evaluate.time_split`` guarantees they ended before).

        Raises:
            ValueError: shapes disagree, fewer than 2 training jobs, NaN outcomes, or a single training class.

        """
        t0 = time.perf_counter()
        y = np.asarray(y, dtype=float).ravel()
        if len(y) != len(X):
            raise ValueError(f"y has {len(y)} rows, X has {len(X)}")
        if len(y) < 2 or np.isnan(y).any():
            raise ValueError("GraphSageRisk needs >= 2 training jobs with known outcomes (no NaN in y)")
        if y.min() == y.max():
            raise ValueError("training outcomes have a single class; cannot fit")
        sub = np.asarray(submit_time, dtype=float).ravel()
        end = np.asarray(end_time, dtype=float).ravel()
        if len(sub) != len(y) or len(end) != len(y):
            raise ValueError("submit_time and end_time must have one entry per training job")
        if len(y) > self.max_train_nodes:
            keep = np.sort(np.argsort(np.where(np.isnan(sub), -np.inf, sub), kind="stable")[-self.max_train_nodes :])
            X = X.iloc[keep] if isinstance(X, pd.DataFrame) else np.asarray(X)[keep]
            y, sub, end = y[keep], sub[keep], end[keep]
        self.index = SimilarityIndex(k=self.k, overfetch=OVERFETCH).fit(X, end_time=end, submit_time=sub, failed=y)
        self._x = self.index.standardiser.transform(X).astype(np.float32)
        self._y = y.astype(np.float32)
        self._edges, _ = self.index.graph(self.k)
        self.in_dim_ = self._x.shape[1]
        self.n_train_ = len(y)
        self.n_edges_ = int(self._edges.shape[1])
        self.graph_seconds_ = time.perf_counter() - t0

        have_cal = X_cal is not None and y_cal is not None and len(y_cal) > 0
        cal = self._union(X_cal, cal_submit_time) if have_cal else None
        yc = np.asarray(y_cal, dtype=float).ravel() if have_cal else np.zeros(0)
        known = ~np.isnan(yc)  # calibration rows with an unknown outcome are scored but not judged
        can_stop = have_cal and 0 < yc[known].sum() < known.sum()
        x = torch.from_numpy(self._x)
        yt = torch.from_numpy(self._y)
        ei = torch.from_numpy(self._edges)
        pos = float(self._y.sum())
        self.pos_weight_ = (len(self._y) - pos) / pos
        pos_weight = torch.tensor(self.pos_weight_)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            net = self._build_net()
            opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
            lossf = torch.nn.BCEWithLogitsLoss(pos_weight=pos_weight)
            best, best_state, best_epoch, epoch = -np.inf, None, 0, 0
            for epoch in range(1, self.max_epochs + 1):
                net.train()
                opt.zero_grad()
                loss = lossf(net(x, yt, ei), yt)
                loss.backward()
                opt.step()
                if can_stop and (epoch % self.eval_every == 0 or epoch == self.max_epochs):
                    net.eval()
                    with torch.no_grad():
                        sc = net(*cal[:3])[cal[3] :].numpy()
                    auc = roc_auc_score(yc[known], sc[known])
                    if auc > best:
                        best, best_epoch = auc, epoch
                        best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
                    elif epoch - best_epoch >= self.patience:
                        break
            if best_state is not None:
                net.load_state_dict(best_state)
        self._net = net
        self.epochs_ = epoch
        self.best_epoch_ = best_epoch if best_state is not None else epoch
        self.cal_auc_ = float(best) if best_state is not None else float("nan")
        self.calibrator = ScoreCalibrator()
        if have_cal:
            net.eval()
            with torch.no_grad():
                raw = self._prob(net(*cal[:3])[cal[3] :].numpy())
            self.calibrator.fit(raw, yc)
        self.fit_seconds_ = time.perf_counter() - t0
        return self

    def raw_score(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Uncalibrated P(fail) (n,) of new jobs ``X`` attached to the training graph, corrected for the class weight.

        Class-weighted training multiplies the odds by ``pos_weight``; ``sigmoid(logit - log(pos_weight))`` undoes
        that (Elkan 2001, "The foundations of cost-sensitive learning", IJCAI, Theorem 1), so the score is on the
        probability scale even where no calibration slice was available. Monotone in the logit: ranks are unchanged.
        """
        return self._prob(self._logits(X, submit_time))

    def _prob(self, logits: np.ndarray | torch.Tensor) -> np.ndarray:
        z = np.asarray(logits, dtype=float) - np.log(self.pos_weight_)
        return 1.0 / (1.0 + np.exp(-z))

    def predict_proba(self, X: pd.DataFrame, *, submit_time: np.ndarray | None = None) -> np.ndarray:
        """Calibrated P(fail) (n,) of new jobs; ``submit_time`` restricts their neighbours to jobs ended before it."""
        return self.calibrator(self.raw_score(X, submit_time=submit_time))

    def training_logits(self, y_override: np.ndarray | None = None) -> np.ndarray:
        """Logits (n,) of the training nodes on the training graph (eval mode), optionally with other outcomes.

        ``y_override`` (n,) replaces the outcomes carried by the messages; used to check that no node's score
        depends on an outcome unknown at its submit.
        """
        if self._net is None or self._x is None or self._y is None or self._edges is None:
            raise RuntimeError("GraphSageRisk is not fitted")
        y = self._y if y_override is None else np.asarray(y_override, dtype=np.float32)
        self._net.eval()
        with torch.no_grad():
            out = self._net(torch.from_numpy(self._x), torch.from_numpy(y), torch.from_numpy(self._edges))
        return out.numpy().astype(float)

    # ------------------------------------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        net = state.pop("_net")
        state["_state_dict"] = (
            None if net is None else {k: v.detach().cpu().numpy() for k, v in net.state_dict().items()}
        )
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        sd = state.pop("_state_dict", None)
        self.__dict__.update(state)
        self._net = None
        if sd is not None:
            self._net = self._build_net()
            self._net.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in sd.items()})
            self._net.eval()


# ------------------------------------------------------------------------------------------------ evaluation CLI
def _gbm_scores(
    Xf: pd.DataFrame, yf: np.ndarray, Xv: pd.DataFrame, yv: np.ndarray, Xt: pd.DataFrame, seed: int
) -> np.ndarray:
    """The GBM recipe of the first ``evaluate`` (commit on main): HistGradientBoosting + calibration on ``Xv``."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    cols = [c for c in Xf.columns if Xf[c].notna().any()]  # an all-NaN column breaks the binning
    gbm = HistGradientBoostingClassifier(max_iter=300, learning_rate=0.05, random_state=seed).fit(Xf[cols], yf)
    cal = ScoreCalibrator().fit(gbm.predict_proba(Xv[cols])[:, 1], yv)
    return cal(gbm.predict_proba(Xt[cols])[:, 1])


def compare_on_trace(
    df: pd.DataFrame, setting: str = "submit", k: int = DEFAULT_K, seed: int = 0, knn_k: int = 20, n_boot: int = 200
) -> dict[str, Any]:
    """AUC-ROC etc. of baseline, GBM, :class:`KnnRisk` and :class:`GraphSageRisk` on one trace, same split for all.

    Split: ``nomade.analytics.evaluate.time_split`` (70 % train by submit, its last 20 % the calibration slice, gap
    rule) on the jobs with known ``submit_time`` and ``failed``; features:
    :func:`~nomade.analytics.features.submit_time_features` (``setting="submit"``) or
    :func:`~nomade.analytics.features.run_time_features` with the training period's top partitions. ``baseline``
    scores test jobs by ``user_past_fail_rate``; ``gbm`` is HistGradientBoosting (300 iterations, learning rate
    0.05) calibrated on the calibration slice. Every model trains on the fit slice and calibrates (and early-stops) on
    the calibration slice; metrics (``evaluate.metrics``) on the test slice. Also the network metrics of the
    leakage-free training graph (outcome = ``failed`` and ``failure_class``) against the permutation null,
    wall-clock seconds of each step, and ``auc_delta_ci``: 95 % paired-bootstrap intervals (``n_boot`` resamples of
    the test jobs) of each model's AUC-ROC minus the baseline's and the GBM's.

    Raises:
        ValueError: unknown setting, too few jobs, or a single-class fit slice.

    """
    from .evaluate import metrics, time_split
    from .features import run_time_features, submit_time_features, top_partitions

    if setting not in ("submit", "run"):
        raise ValueError(f"setting must be 'submit' or 'run', got {setting!r}")
    d = df[df["submit_time"].notna() & df["failed"].notna()]
    d = d.sort_values("submit_time", kind="stable").reset_index(drop=True)
    sp = time_split(d)
    fn = submit_time_features if setting == "submit" else run_time_features
    X, _ = fn(d, partitions=top_partitions(d.iloc[sp.train]))
    X = X.replace([np.inf, -np.inf], np.nan)
    y = d["failed"].astype(bool).to_numpy().astype(int)
    if y[sp.fit].min(initial=0) == y[sp.fit].max(initial=0):
        raise ValueError("fit slice has a single class; cannot fit")
    s = d["submit_time"].to_numpy(float)
    e = d["end_time"].to_numpy(float)
    fit, val, test = sp.fit, sp.val, sp.test
    out: dict[str, Any] = {"setting": setting, "n_fit": len(fit), "n_val": len(val), "n_test": len(test)}
    out["test_failure_rate"] = float(y[test].mean()) if len(test) else float("nan")
    scores = {"baseline": X["user_past_fail_rate"].to_numpy()[test]}
    t = time.perf_counter()
    scores["gbm"] = _gbm_scores(X.iloc[fit], y[fit], X.iloc[val], y[val], X.iloc[test], seed)
    seconds = {"gbm": time.perf_counter() - t}
    fc = d["failure_class"].to_numpy(object) if "failure_class" in d.columns else None

    t = time.perf_counter()
    knn = KnnRisk(k=knn_k).fit(
        X.iloc[fit], y[fit], submit_time=s[fit], end_time=e[fit], X_cal=X.iloc[val], y_cal=y[val],
        failure_class=None if fc is None else fc[fit],
    )  # fmt: skip
    scores["knn"] = knn.predict_proba(X.iloc[test], submit_time=s[test])
    seconds["knn"] = time.perf_counter() - t

    ei, _ = knn.index.graph(k)
    net_m = {"failed": network_metrics(ei, y[fit], seed=seed)}
    if fc is not None:
        net_m["failure_class"] = network_metrics(ei, fc[fit], seed=seed)

    for label, lm in (("gnn", True), ("gnn_features_only", False)):
        t = time.perf_counter()
        g = GraphSageRisk(k=k, seed=seed, label_messages=lm).fit(
            X.iloc[fit], y[fit], submit_time=s[fit], end_time=e[fit], X_cal=X.iloc[val], y_cal=y[val]
        )
        scores[label] = g.predict_proba(X.iloc[test], submit_time=s[test])
        seconds[label] = time.perf_counter() - t
        seconds[label + "_graph"] = g.graph_seconds_
        out[label + "_epochs"] = g.epochs_
        out[label + "_best_epoch"] = g.best_epoch_
        out[label + "_cal_auc"] = g.cal_auc_  # the early-stopping score: a fair basis to choose between variants
    models = {m: metrics(y[test], sc) for m, sc in scores.items()}
    out.update(models=models, network=net_m, seconds=seconds, torch_threads=torch.get_num_threads())
    out["auc_delta_ci"] = _auc_delta_ci(y[test], scores, n_boot=n_boot, seed=seed)
    return out


def _auc_delta_ci(
    y: np.ndarray, scores: dict[str, np.ndarray], n_boot: int, seed: int, refs: Sequence[str] = ("baseline", "gbm")
) -> dict[str, dict[str, list[float]]]:
    """95 % paired-bootstrap percentile intervals of AUC-ROC differences (Efron & Tibshirani 1993, ch. 13).

    Test jobs are resampled with replacement ``n_boot`` times; each model's AUC minus each reference's AUC on the same
    resample. Returns ``{model: {"vs_<ref>": [low, high]}}``; empty when the test set has one class or n_boot < 1.
    """
    y = np.asarray(y).astype(int)
    if n_boot < 1 or y.min(initial=0) == y.max(initial=0):
        return {}
    rng = np.random.default_rng(seed)
    names = list(scores)
    aucs = np.full((n_boot, len(names)), np.nan)
    for b in range(n_boot):
        i = rng.integers(0, len(y), len(y))
        if y[i].min() == y[i].max():
            continue
        aucs[b] = [roc_auc_score(y[i], scores[m][i]) for m in names]
    out: dict[str, dict[str, list[float]]] = {}
    for j, m in enumerate(names):
        for r in refs:
            if r == m or r not in names:
                continue
            dlt = aucs[:, j] - aucs[:, names.index(r)]
            out.setdefault(m, {})[f"vs_{r}"] = [float(np.nanpercentile(dlt, 2.5)), float(np.nanpercentile(dlt, 97.5))]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m nomade.analytics.gnn --trace PATH [--setting submit|run] [--threads N] [--out FILE.json]``.

    Prints a Markdown table of AUC-ROC, AUC-PR, recall at 5 % FPR and Brier for baseline, gbm, knn, gnn and
    gnn_features_only, the network metrics against their permutation null, and timings. Exit 2 on an unusable trace.
    """
    ap = argparse.ArgumentParser(prog="nomade.analytics.gnn", description=__doc__.splitlines()[0])
    ap.add_argument("--trace", required=True, type=Path)
    ap.add_argument("--setting", choices=["submit", "run"], default="submit")
    ap.add_argument("--k", type=int, default=DEFAULT_K)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path)
    a = ap.parse_args(argv)
    from .traces import load_trace

    torch.set_num_threads(a.threads)
    try:
        r = compare_on_trace(load_trace(a.trace), a.setting, k=a.k, seed=a.seed)
    except ValueError as e:
        print(f"cannot evaluate {a.trace}: {e}", file=sys.stderr)
        return 2
    print(f"# {a.trace.name} setting={a.setting} fit={r['n_fit']} cal={r['n_val']} test={r['n_test']}\n")
    print("| model | AUC-ROC | AUC-PR | recall @ 5 % FPR | Brier |\n|---|---|---|---|---|")
    for name, m in r["models"].items():
        print(f"| {name} | {m['auc_roc']:.3f} | {m['auc_pr']:.3f} | {m['recall_at_5fpr']:.3f} | {m['brier']:.4f} |")
    for lab, nm in r["network"].items():
        print(
            f"\nnetwork ({lab}): assortativity {nm['assortativity']:.3f} (null {nm['assortativity_null']:.3f} "
            f"+- {nm['assortativity_null_sd']:.3f}), purity {nm['purity']:.3f} (null {nm['purity_null']:.3f} "
            f"+- {nm['purity_null_sd']:.3f}), edges {nm['n_edges']}"
        )
    for name, ci in r["auc_delta_ci"].items():
        print(f"\n{name}: AUC-ROC difference, 95 % bootstrap interval: " + ", ".join(
            f"{ref} [{lo:+.3f}, {hi:+.3f}]" for ref, (lo, hi) in ci.items()
        ))  # fmt: skip
    for label in ("gnn", "gnn_features_only"):
        print(
            f"\n{label}: epochs {r[label + '_epochs']} (best {r[label + '_best_epoch']}, "
            f"calibration-slice AUC {r[label + '_cal_auc']:.3f})"
        )
    print(
        "\nseconds: " + ", ".join(f"{k} {v:.1f}" for k, v in r["seconds"].items()) + f"; threads {r['torch_threads']}"
    )
    if a.out:
        a.out.write_text(json.dumps(r, indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
