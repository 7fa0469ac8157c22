"""Model registry: atomic versioned saves, the accepted pointer, pruning, and fallback on corrupt artefacts."""

from __future__ import annotations

import json
import os
import pickle
import stat

import pytest

from nomade.analytics.model_store import POINTER, ModelLoadError, ModelRegistry, library_versions, write_atomic

T0 = 1_790_000_000.0  # 2026-09-21T14:13:20Z


class Model:
    """A picklable stand-in for a fitted pipeline."""

    def __init__(self, tag: str, setting: str = "submit") -> None:
        self.tag = tag
        self.setting = setting


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def registry(tmp_path, keep=5, clock=None) -> ModelRegistry:
    return ModelRegistry(tmp_path / "models", keep=keep, clock=clock or Clock())


def test_save_load_round_trip_with_metadata_and_private_permissions(tmp_path):
    reg = registry(tmp_path)
    meta = {"threshold": 0.25, "holdout": {"auc_roc": float("nan"), "brier": 0.1}, "features": ["a", "b"]}
    v = reg.save(Model("m1"), meta)
    assert v == "20260921T141320Z"  # UTC of T0, the version's sortable name
    assert reg.current_version("submit") == v
    model, got = reg.current("submit")
    assert model.tag == "m1"
    assert got["threshold"] == 0.25 and got["features"] == ["a", "b"]
    assert got["holdout"]["auc_roc"] is None  # NaN is not JSON: absent
    assert got["version"] == v and got["setting"] == "submit" and got["created_at"] == T0
    assert got["library_versions"]["numpy"] == library_versions()["numpy"]
    d = tmp_path / "models" / "submit"
    assert stat.S_IMODE(os.stat(tmp_path / "models").st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in (f"{v}.pkl", f"{v}.json", POINTER):
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600, name
    assert (d / POINTER).read_text() == f"{v}\n"
    json.loads((d / f"{v}.json").read_text())  # strict JSON (no NaN tokens)
    assert sorted(p.name for p in d.iterdir()) == sorted([f"{v}.pkl", f"{v}.json", POINTER])  # no temp files


def test_setting_comes_from_argument_metadata_or_pipeline(tmp_path):
    reg = registry(tmp_path)
    reg.save(Model("r", setting="run"), {})
    assert reg.current("run")[0].tag == "r"
    reg.save(Model("x"), {"setting": "run"}, setting="submit")
    assert reg.current("submit")[0].tag == "x"
    with pytest.raises(ValueError, match="no setting"):
        reg.save(object(), {})


def test_same_second_versions_do_not_collide_and_sort_by_age(tmp_path):
    reg = registry(tmp_path)
    vs = [reg.save(Model(f"m{i}"), {}) for i in range(3)]
    assert vs == ["20260921T141320Z", "20260921T141320Z-2", "20260921T141320Z-3"]
    assert reg.versions("submit") == vs
    assert reg.current("submit")[0].tag == "m2"


def test_unaccepted_save_keeps_the_pointer(tmp_path):
    clock = Clock()
    reg = registry(tmp_path, clock=clock)
    v1 = reg.save(Model("good"), {})
    clock.t += 60
    v2 = reg.save(Model("candidate"), {}, accept=False)
    assert reg.current_version("submit") == v1
    assert reg.current("submit")[0].tag == "good"
    reg.accept("submit", v2)
    assert reg.current("submit")[0].tag == "candidate"
    with pytest.raises(FileNotFoundError):
        reg.accept("submit", "20000101T000000Z")


def test_unpicklable_pipeline_leaves_nothing_behind(tmp_path):
    reg = registry(tmp_path)
    v1 = reg.save(Model("good"), {})
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        reg.save(Model(lambda: 0), {}, setting="submit")  # lambdas do not pickle
    assert reg.versions("submit") == [v1] and reg.current_version("submit") == v1
    assert not [p for p in (tmp_path / "models" / "submit").iterdir() if p.name.endswith(".tmp")]


def test_write_atomic_replaces_and_cleans_up_on_error(tmp_path, monkeypatch):
    p = tmp_path / "f"
    write_atomic(p, b"one")
    write_atomic(p, b"two")
    assert p.read_bytes() == b"two"

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(p, b"three")
    assert p.read_bytes() == b"two"
    assert [q.name for q in tmp_path.iterdir()] == ["f"]


def test_prune_keeps_the_newest_and_never_the_current(tmp_path):
    clock = Clock()
    reg = registry(tmp_path, keep=3)
    reg._clock = clock
    first = reg.save(Model("m0"), {})
    vs = [first]
    for i in range(1, 6):
        clock.t += 3600
        vs.append(reg.save(Model(f"m{i}"), {}, accept=False))
    # the pointer still names the oldest: it survives, the other two kept are the newest
    assert reg.prune("submit") == vs[1:4]
    assert reg.versions("submit") == [first, vs[4], vs[5]]
    clock.t += 3600
    v = reg.save(Model("new"), {})  # accepted: prune runs, the oldest (no longer current) goes
    assert reg.versions("submit") == [vs[4], vs[5], v]


def test_prune_removes_orphans(tmp_path):
    reg = registry(tmp_path)
    v = reg.save(Model("m"), {})
    d = tmp_path / "models" / "submit"
    (d / "20200101T000000Z.pkl").write_bytes(b"half")  # crash between the two writes
    reg.prune("submit")
    assert not (d / "20200101T000000Z.pkl").exists()
    assert reg.versions("submit") == [v]


def test_corrupt_current_falls_back_to_the_previous_model(tmp_path, caplog):
    clock = Clock()
    reg = registry(tmp_path, clock=clock)
    reg.save(Model("old"), {})
    clock.t += 60
    v2 = reg.save(Model("new"), {})
    clock.t += 60
    reg.save(Model("unaccepted"), {}, accept=False)  # newer than the pointer: never used as a fallback
    (tmp_path / "models" / "submit" / f"{v2}.pkl").write_bytes(b"\x80\x05truncated")
    model, meta = reg.current("submit")
    assert model.tag == "old"
    assert reg.load_errors == 1
    assert "falling back" in caplog.text
    assert reg.current_version("submit") == v2  # the evidence stays for an operator


def test_corrupt_metadata_and_all_corrupt(tmp_path):
    reg = registry(tmp_path)
    v = reg.save(Model("m"), {})
    (tmp_path / "models" / "submit" / f"{v}.json").write_text("{not json")
    assert reg.current("submit") is None
    assert reg.load_errors == 1
    assert reg.current("run") is None  # nothing saved for that setting
    assert reg.load_errors == 1


def test_refuses_pickles_others_can_write(tmp_path):
    reg = registry(tmp_path)
    v = reg.save(Model("m"), {})
    p = tmp_path / "models" / "submit" / f"{v}.pkl"
    os.chmod(p, 0o666)
    with pytest.raises(ModelLoadError, match="refusing to unpickle"):
        reg.load("submit", v)
    assert reg.current("submit") is None


def test_malformed_pointer_and_bad_setting(tmp_path):
    reg = registry(tmp_path)
    reg.save(Model("m"), {})
    (tmp_path / "models" / "submit" / POINTER).write_text("../../etc/passwd\n")
    assert reg.current_version("submit") is None and reg.current("submit") is None
    with pytest.raises(ValueError, match="setting"):
        reg.versions("../x")
    with pytest.raises(ValueError, match="keep"):
        ModelRegistry(tmp_path, keep=0)
