"""Grafana's published dashboard schema as JSON Schema, for validating the generated dashboards.

Grafana publishes its dashboard and panel schemas (CUE kinds in grafana/grafana) as the npm package
``@grafana/schema``: TypeScript types generated from the CUE (``dist/types/raw/dashboard/x/types.gen.d.ts``, the
classic dashboard JSON model; ``dist/types/raw/composable/<panel>/panelcfg/x/types.gen.d.ts``, each panel plugin's
``Options`` and ``FieldConfig``). grafana-foundation-sdk's ``jsonschema/`` files are generated from the same CUE but
are only on GitHub, which the build cannot reach. So this helper installs pinned versions of ``@grafana/schema``
(several Grafana releases) and of ``ts-json-schema-generator`` + ``typescript`` from npm (``tests/schemas/npm``:
package.json and package-lock.json with integrity hashes, installed with ``npm ci``) into the git-ignored
``tests/schemas/.cache`` and converts the types to JSON Schema (draft-07) there. Nothing third-party is committed.

The generator closes every object (``additionalProperties: false`` where the TypeScript interface has no index
signature), as CUE definitions are closed, so a key Grafana's schema does not define is reported.

Usage: ``python tests/grafana_schema.py`` (Makefile ``unit`` target; idempotent, skips work when the cache is
current) or :func:`ensure_schemas` from a test. Needs ``node`` and ``npm`` (and the npm registry the first time).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NPM_DIR = ROOT / "tests" / "schemas" / "npm"
CACHE = ROOT / "tests" / "schemas" / ".cache"
GENERATOR_REVISION = "3"  # bump when the generation below changes, to rebuild caches

ALIAS_PREFIX = "grafana-schema-"
# panel type id -> directory of its panelcfg in @grafana/schema (the panel plugin's id without dashes)
PANEL_PLUGIN_DIRS = {
    "timeseries": "timeseries",
    "stat": "stat",
    "table": "table",
    "bargauge": "bargauge",
    "heatmap": "heatmap",
    "state-timeline": "statetimeline",
}


class SchemaUnavailable(RuntimeError):
    """node/npm missing, the registry unreachable, or the generator failed (the message says which)."""


@dataclass(frozen=True)
class SchemaSet:
    """The JSON Schemas of one Grafana release.

    Attributes:
        grafana: the release (``11.6``: the npm alias suffix).
        package_version: the exact ``@grafana/schema`` version.
        dashboard: schema of the dashboard JSON model (type ``Dashboard``).
        options: panel type -> schema of the panel's ``options`` (type ``Options``).
        field_config: panel type -> schema of ``fieldConfig.defaults.custom`` (type ``FieldConfig``), for panels
            that define one.

    """

    grafana: str
    package_version: str
    dashboard: dict
    options: dict[str, dict]
    field_config: dict[str, dict]


def _aliases() -> dict[str, str]:
    deps = json.loads((NPM_DIR / "package.json").read_text())["dependencies"]
    return {k[len(ALIAS_PREFIX) :]: k for k in sorted(deps) if k.startswith(ALIAS_PREFIX)}


def _fingerprint() -> str:
    h = hashlib.sha256(GENERATOR_REVISION.encode())
    for name in ("package.json", "package-lock.json"):
        h.update((NPM_DIR / name).read_bytes())
    return h.hexdigest()


def _run(cmd: list[str], cwd: Path, timeout: float) -> None:
    try:
        r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    except FileNotFoundError as exc:
        raise SchemaUnavailable(f"{cmd[0]} not found: install Node.js and npm") from exc
    except subprocess.TimeoutExpired as exc:
        raise SchemaUnavailable(f"{' '.join(cmd)} timed out after {timeout:.0f} s") from exc
    if r.returncode != 0:
        raise SchemaUnavailable(f"{' '.join(cmd)} failed ({r.returncode}): {(r.stderr or r.stdout)[-2000:]}")


def _exports(dts: Path) -> set[str]:
    text = dts.read_text()
    return {name for kw in ("interface", "type") for name in _names_after(text, f"export {kw} ")}


def _names_after(text: str, marker: str) -> list[str]:
    out = []
    for line in text.splitlines():
        if line.startswith(marker):
            out.append(line[len(marker) :].split()[0].split("<")[0].rstrip("{="))
    return out


def _types_root(pkg: Path) -> Path:
    """Directory of the package's declarations with the ``raw/`` kinds: ``dist/types`` (12.x+) or ``dist/esm``."""
    for candidate in (pkg / "dist" / "types", pkg / "dist" / "esm"):
        if (candidate / "index.d.ts").is_file() and any(
            (candidate / "raw" / "dashboard" / "x").glob("*types.gen.d.ts")
        ):
            return candidate
    raise SchemaUnavailable(f"{pkg}: no dist/types or dist/esm with raw/dashboard/x/*types.gen.d.ts")


def _dts(pkg: Path, kind_dir: str) -> Path:
    """The CUE-generated declaration file of a kind: ``<types root>/raw/<kind_dir>/[<Kind>_]types.gen.d.ts``."""
    d = _types_root(pkg) / "raw" / kind_dir
    found = sorted(d.glob("*types.gen.d.ts"))
    if len(found) != 1:
        raise SchemaUnavailable(f"expected one *types.gen.d.ts in {d}, found {found}")
    return found[0]


def ensure_schemas(cache: Path = CACHE, *, timeout: float = 600.0) -> Path:
    """Install the pinned npm packages and generate the JSON Schemas into ``cache`` unless it is current.

    Returns:
        ``cache``; it holds ``<release>/dashboard.schema.json``, ``<release>/panels/<type>.options.schema.json``,
        ``<release>/panels/<type>.fieldconfig.schema.json`` and ``<release>/version``.

    Raises:
        SchemaUnavailable: when node/npm are missing, the install fails or the generator fails.

    """
    stamp = cache / "stamp"
    fingerprint = _fingerprint()
    if stamp.is_file() and stamp.read_text().strip() == fingerprint:
        return cache
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise SchemaUnavailable("node and npm are needed to build Grafana's JSON Schema (apt-get install nodejs npm)")
    work = cache / "npm"
    work.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        shutil.copyfile(NPM_DIR / name, work / name)
    _run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"], work, timeout)
    gen = work / "node_modules" / "ts-json-schema-generator" / "bin" / "ts-json-schema-generator.js"
    for release, alias in _aliases().items():
        pkg = work / "node_modules" / alias
        out = cache / release
        if out.exists():
            shutil.rmtree(out)
        (out / "panels").mkdir(parents=True)
        # The panel kinds import the common types as '@grafana/schema': resolve that name to this release.
        tsconfig = work / f"tsconfig-{release}.json"
        index = _types_root(pkg) / "index.d.ts"
        paths = {"@grafana/schema": [str(index.relative_to(work))]}
        compiler = {"baseUrl": ".", "paths": paths, "skipLibCheck": True, "strict": True, "noEmit": True}
        tsconfig.write_text(json.dumps({"compilerOptions": compiler}, indent=2) + "\n")
        jobs = [(_dts(pkg, "dashboard/x"), "Dashboard", out / "dashboard.schema.json")]
        for panel, directory in PANEL_PLUGIN_DIRS.items():
            dts = _dts(pkg, f"composable/{directory}/panelcfg/x")
            exported = _exports(dts)
            jobs.append((dts, "Options", out / "panels" / f"{panel}.options.schema.json"))
            if "FieldConfig" in exported:
                jobs.append((dts, "FieldConfig", out / "panels" / f"{panel}.fieldconfig.schema.json"))
        for dts, type_name, target in jobs:
            _run(
                [
                    str(x)
                    for x in ("node", gen, "--tsconfig", tsconfig, "--path", dts, "--type", type_name, "-o", target)
                ],
                work,
                timeout,
            )
        version = json.loads((pkg / "package.json").read_text())["version"]
        (out / "version").write_text(version + "\n")
    stamp.write_text(fingerprint + "\n")
    return cache


def load_schema_sets(cache: Path = CACHE) -> list[SchemaSet]:
    """The schemas of every pinned Grafana release (building the cache first when needed), oldest first."""
    ensure_schemas(cache)
    sets = []
    for release in sorted(_aliases(), key=lambda r: tuple(int(x) for x in r.split("."))):
        d = cache / release
        options: dict[str, dict] = {}
        field_config: dict[str, dict] = {}
        for panel in PANEL_PLUGIN_DIRS:
            options[panel] = json.loads((d / "panels" / f"{panel}.options.schema.json").read_text())
            fc = d / "panels" / f"{panel}.fieldconfig.schema.json"
            if fc.is_file():
                field_config[panel] = json.loads(fc.read_text())
        sets.append(
            SchemaSet(
                grafana=release,
                package_version=(d / "version").read_text().strip(),
                dashboard=json.loads((d / "dashboard.schema.json").read_text()),
                options=options,
                field_config=field_config,
            )
        )
    return sets


if __name__ == "__main__":
    try:
        path = ensure_schemas()
    except SchemaUnavailable as exc:
        print(f"grafana_schema: {exc}", file=sys.stderr)
        sys.exit(1)
    for s in load_schema_sets(path):
        print(f"Grafana {s.grafana}: @grafana/schema {s.package_version}, panels {', '.join(sorted(s.options))}")
