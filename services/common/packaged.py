"""The files the package ships beside its code: the Avro schemas (current and history),
the mappings with their JSON Schema, and the example tenants file.

The repository keeps them at the top (`schemas/`, `mappings/`, `config/`); the wheel
carries them inside the package, as `services/_data/<folder>` (pyproject.toml maps them
there at build time). Both are found from the package itself through
`importlib.resources`, never from the working directory: an installed wheel reads its
own copy from any directory, a source checkout (editable install, `python -m ...` from
the repository) reads the repository's folders.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from importlib.resources import files
from pathlib import Path

from services.common.errors import ConfigError

PACKAGE = __name__.split(".", 1)[0]
DATA = "_data"


def _package_dir() -> Path:
    root = files(PACKAGE)
    if not isinstance(root, Path):
        # A zip or another loader without files on disk: the schemas and mappings must be
        # real files (they are globbed and given to the services as paths).
        raise ConfigError(f"package {PACKAGE!r} is not installed as files on disk ({root})")
    return root


def data_dir(name: str) -> Path:
    """The shipped folder `name` ("schemas", "mappings" or "config"): the installed
    package's copy, or the source checkout's top-level folder. ConfigError if neither
    exists (a broken install says so, instead of finding nothing to read)."""
    package = _package_dir()
    for candidate in (package / DATA / name, package.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"no {name}/ shipped with {PACKAGE} at {package / DATA / name} "
        f"(installed package) or {package.parent / name} (source checkout)"
    )


def distribution_version(distribution: str) -> str:
    """The installed version of `distribution`; "unknown" when run from a checkout that
    was never installed."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return "unknown"
