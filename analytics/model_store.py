"""Model registry: versioned risk-model artefacts with metadata, saved atomically, one accepted model per setting.

Layout under the registry directory (``[analytics.risk] model_dir``)::

    <dir>/<setting>/<version>.pkl     the fitted pipeline (pickle)
    <dir>/<setting>/<version>.json    its metadata (training window, feature schema, holdout metrics, threshold,
                                      created_at, library versions...)
    <dir>/<setting>/CURRENT           the accepted version's name (one line)

Atomicity: every file is written to a temporary file in the same directory, flushed and ``fsync``-ed, then renamed
over its final name with :func:`os.replace` (atomic on POSIX within one file system), and the directory is
``fsync``-ed so the rename survives a power cut. The metadata is written before the pickle and the pointer last, so
a crash leaves at worst an orphan file that :meth:`ModelRegistry.prune` removes, never a pointer to a missing or
half-written model.

Security: :mod:`pickle` runs code while loading, so an artefact is trusted only because the service wrote it into
its own directory. The registry creates the directories 0700 and the files 0600, and refuses to load a pickle that
is not a regular file owned by the service's user or is writable by group or others (logged, treated as corrupt).
Never point ``model_dir`` at a directory other users can write.

Failures never crash the service: an artefact that cannot be read or unpickled is logged, counted in
:attr:`ModelRegistry.load_errors`, and :meth:`ModelRegistry.current` falls back to the newest older artefact that
loads (the pointer is left as it is, so the evidence stays for an operator).
"""

from __future__ import annotations

import json
import logging
import math
import os
import pickle
import re
import stat
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("nomade.analytics.model_store")

POINTER = "CURRENT"
"""Name of the per-setting pointer file holding the accepted version."""

_VERSION_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z(?:-[0-9]+)?$")
_SETTING_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def library_versions() -> dict[str, str]:
    """Versions of the libraries a pickled pipeline depends on (``importlib.metadata``), for the metadata.

    A model pickled by one scikit-learn or torch version may not load, or may predict differently, under another
    (scikit-learn's "Model persistence" documentation); recording them lets an operator tell why an old artefact
    fails to load. Libraries that are not installed are left out.
    """
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("numpy", "pandas", "scikit-learn", "scipy", "torch", "torch-geometric", "nomade-hpc"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            continue
    return out


def _jsonable(value: Any) -> Any:
    """Metadata as strict JSON: NaN/inf -> None (absent), numpy scalars and arrays -> Python, paths -> str."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    tolist = getattr(value, "tolist", None)  # numpy scalars and arrays
    if callable(tolist):
        return _jsonable(tolist())
    return str(value)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temporary file (0600) in the same directory, fsync, ``os.replace``.

    Raises:
        OSError: the directory is not writable or the disk is full (the temporary file is removed).

    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)  # mode 0600
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


class ModelRegistry:
    """Versioned, atomically saved risk models, one accepted ("current") version per setting.

    Args:
        directory: the registry root (created 0700 when missing). Must be private to the service: pickles are
            executable code (see the module docstring).
        keep: artefacts kept per setting by :meth:`prune` (the current one is never removed).
        clock: wall clock, Unix seconds (replaced in tests).

    Attributes:
        load_errors: artefacts that could not be loaded since start (unreadable, corrupt, unsafe permissions).

    """

    def __init__(self, directory: str | Path, keep: int = 5, clock: Any = time.time) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.dir = Path(directory)
        self.keep = keep
        self._clock = clock
        self.load_errors = 0

    # -- paths ---------------------------------------------------------------------------------------------------

    def _setting_dir(self, setting: str, create: bool = False) -> Path:
        if not _SETTING_RE.match(setting):
            raise ValueError(f"setting {setting!r} is not a lower-case name")
        d = self.dir / setting
        if create:
            for p in (self.dir, d):
                if not p.exists():
                    p.mkdir(mode=0o700, parents=True, exist_ok=True)
                    os.chmod(p, 0o700)  # mkdir's mode is filtered by the umask
        return d

    def versions(self, setting: str) -> list[str]:
        """Saved versions of ``setting`` (those with both a pickle and metadata), oldest first.

        Version names are UTC creation times (``20261129T174500Z``, ``-2`` appended on a collision), so their
        sort order is their age.
        """
        d = self._setting_dir(setting)
        if not d.is_dir():
            return []
        out = [p.stem for p in d.glob("*.pkl") if _VERSION_RE.match(p.stem) and (d / f"{p.stem}.json").exists()]
        return sorted(out, key=_version_key)

    def current_version(self, setting: str) -> str | None:
        """The accepted version named by the pointer, or ``None`` (no pointer, unreadable or malformed)."""
        p = self._setting_dir(setting) / POINTER
        try:
            text = p.read_text().strip()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.warning("model registry: cannot read %s: %s", p, exc)
            return None
        return text if _VERSION_RE.match(text) else None

    # -- writing -------------------------------------------------------------------------------------------------

    def save(
        self, pipeline: Any, metadata: Mapping[str, Any], *, setting: str | None = None, accept: bool = True
    ) -> str:
        """Save a fitted pipeline and its metadata as a new version; make it current when ``accept``.

        Args:
            pipeline: any picklable object (a :class:`nomade.analytics.pipeline.RiskPipeline`).
            metadata: JSON-able description; ``version``, ``setting``, ``created_at`` and ``library_versions`` are
                added (NaN and infinities become ``null``).
            setting: ``submit`` or ``run``; default ``metadata["setting"]``, then ``pipeline.setting``.
            accept: point the setting's ``CURRENT`` at the new version, then :meth:`prune`.

        Returns:
            The new version's name.

        Raises:
            ValueError: no setting given or found.
            OSError: the directory cannot be written (nothing half-written is left behind).
            pickle.PicklingError, TypeError, AttributeError: the pipeline cannot be pickled.

        """
        setting = setting or metadata.get("setting") or getattr(pipeline, "setting", None)
        if not isinstance(setting, str):
            raise ValueError("save: no setting in the arguments, the metadata or the pipeline")
        d = self._setting_dir(setting, create=True)
        created = float(self._clock())
        base = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(created))
        version, n = base, 1
        while (d / f"{version}.pkl").exists() or (d / f"{version}.json").exists():
            n += 1
            version = f"{base}-{n}"
        blob = pickle.dumps(pipeline, protocol=pickle.HIGHEST_PROTOCOL)  # fails before anything is written
        meta = {
            **dict(metadata),
            "version": version,
            "setting": setting,
            "created_at": created,
            "library_versions": library_versions(),
        }
        text = json.dumps(_jsonable(meta), indent=1, sort_keys=True, allow_nan=False)
        write_atomic(d / f"{version}.json", text.encode())
        write_atomic(d / f"{version}.pkl", blob)
        if accept:
            self.accept(setting, version)
        return version

    def accept(self, setting: str, version: str) -> None:
        """Make ``version`` the current model of ``setting`` (atomic pointer update), then prune.

        Raises:
            FileNotFoundError: the version does not exist.

        """
        d = self._setting_dir(setting, create=True)
        if not (d / f"{version}.pkl").exists():
            raise FileNotFoundError(f"model {setting}/{version} does not exist")
        write_atomic(d / POINTER, f"{version}\n".encode())
        self.prune(setting)

    def prune(self, setting: str, keep: int | None = None) -> list[str]:
        """Delete the oldest versions beyond ``keep`` (default :attr:`keep`), never the current one.

        Also removes orphans (a pickle without metadata or the reverse, left by a crash) and stale temporary
        files. Returns the versions removed. Deletion errors are logged, not raised.
        """
        keep = self.keep if keep is None else keep
        d = self._setting_dir(setting)
        if not d.is_dir():
            return []
        cur = self.current_version(setting)
        versions = self.versions(setting)
        old = [v for v in versions if v != cur]
        n_remove = max(0, len(versions) - keep)
        removed = old[:n_remove]
        doomed = [d / f"{v}{ext}" for v in removed for ext in (".pkl", ".json")]
        valid = set(versions)
        for p in d.iterdir():
            stem = p.name.split(".", 1)[0]
            orphan = p.suffix in (".pkl", ".json") and _VERSION_RE.match(p.stem) and p.stem not in valid
            # a temporary file older than an hour is a crash's leftover, not a save in progress
            stale_tmp = p.name.startswith(".") and p.name.endswith(".tmp") and _age(p) > 3600
            if (orphan and stem != cur) or stale_tmp:
                doomed.append(p)
        for p in doomed:
            try:
                p.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("model registry: cannot remove %s: %s", p, exc)
        return removed

    # -- reading -------------------------------------------------------------------------------------------------

    def metadata(self, setting: str, version: str) -> dict[str, Any] | None:
        """The metadata of one version, or ``None`` when it is missing or not valid JSON (logged)."""
        p = self._setting_dir(setting) / f"{version}.json"
        try:
            data = json.loads(p.read_text())
        except (OSError, ValueError) as exc:
            log.warning("model registry: cannot read %s: %s", p, exc)
            return None
        return data if isinstance(data, dict) else None

    def load(self, setting: str, version: str) -> tuple[Any, dict[str, Any]]:
        """Unpickle one version and read its metadata.

        Raises:
            ModelLoadError: missing, unsafe (not a regular file of the service's user, or group/other-writable),
                unreadable or corrupt artefact.

        """
        d = self._setting_dir(setting)
        p = d / f"{version}.pkl"
        try:
            st = os.lstat(p)
            if not stat.S_ISREG(st.st_mode):
                raise ModelLoadError(f"{p} is not a regular file")
            if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                raise ModelLoadError(f"{p}: refusing to unpickle a file another user can write or owns")
            meta = self.metadata(setting, version)
            if meta is None:
                raise ModelLoadError(f"{setting}/{version}: metadata missing or corrupt")
            with open(p, "rb") as fh:
                model = pickle.load(fh)  # noqa: S301 - trusted: the service's own 0700 directory (module docstring)
        except ModelLoadError:
            raise
        except Exception as exc:  # unpickling can raise nearly anything (EOFError, UnpicklingError, ImportError...)
            raise ModelLoadError(f"{p}: {type(exc).__name__}: {exc}") from exc
        return model, meta

    def current(self, setting: str) -> tuple[Any, dict[str, Any]] | None:
        """The accepted model of ``setting`` and its metadata, or ``None`` when there is none that loads.

        When the pointed-to artefact cannot be loaded, the error is logged and counted (:attr:`load_errors`) and
        the newest older version that loads is returned instead; versions newer than the pointer (saved but not
        accepted) are never used. Never raises for a bad artefact.
        """
        try:
            versions = self.versions(setting)
        except OSError as exc:
            log.warning("model registry: cannot list %s: %s", self.dir / setting, exc)
            return None
        cur = self.current_version(setting)
        if cur is None:
            return None
        candidates = [cur] + [v for v in reversed(versions) if _version_key(v) < _version_key(cur)]
        for v in candidates:
            try:
                model, meta = self.load(setting, v)
            except ModelLoadError as exc:
                self.load_errors += 1
                log.error("model registry: %s; falling back to an older model", exc)
                continue
            if v != cur:
                log.warning("model registry: serving %s/%s instead of the unreadable %s", setting, v, cur)
            return model, meta
        return None


class ModelLoadError(RuntimeError):
    """A saved model could not be loaded (missing, unsafe permissions, unreadable or corrupt)."""


def _version_key(v: str) -> tuple[str, int]:
    base, _, n = v.partition("-")
    return base, int(n or 1)


def _age(p: Path) -> float:
    try:
        return time.time() - p.stat().st_mtime
    except OSError:
        return 0.0


__all__ = ["ModelLoadError", "ModelRegistry", "library_versions", "write_atomic"]
