"""The console's local users: a YAML file of names, roles and argon2 password hashes.

    users:
      - {name: alice, role: operator, password_hash: "$argon2id$v=19$..."}

The file is read again when it changes, so removing a user or changing a role takes
effect at their next request. Passwords are never stored, only argon2id hashes
(argon2-cffi's defaults); a login for an unknown name costs the same as a wrong
password, so names can't be probed by timing.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import yaml
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.common.errors import ConfigError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
RANK = {"viewer": 0, "operator": 1}

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("not a password of anyone")


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password_hash: str

    def may(self, role: Role) -> bool:
        return RANK[self.role] >= RANK[role]


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def parse_users(path: Path) -> dict[str, User]:
    """Every user of the file; ConfigError lists every problem, naming user and field."""
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the console users file: {exc}") from None
    entries = doc.get("users") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected `users:` with a list of users")
    users: dict[str, User] = {}
    problems: list[str] = []
    for n, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(f"{path}: user {n}: name: required")
            continue
        name = entry["name"]
        if entry.get("role") not in ROLES:
            problems.append(f"{path}: user {name}: role: one of {', '.join(ROLES)}")
        hashed = entry.get("password_hash")
        if not isinstance(hashed, str) or not hashed.startswith("$argon2"):
            problems.append(f"{path}: user {name}: password_hash: an argon2 hash is required")
        if name in users:
            problems.append(f"{path}: user {name}: listed twice")
        users[name] = User(name, cast(Role, entry.get("role")), str(hashed))
    if problems:
        raise ConfigError(problems)
    return users


def write_user(path: Path, name: str, role: Role, password: str) -> None:
    """Add ``name`` (or replace its role and password); the file is kept mode 600."""
    users = parse_users(path) if path.exists() else {}
    users[name] = User(name, role, hash_password(password))
    doc = {
        "users": [
            {"name": u.name, "role": u.role, "password_hash": u.password_hash}
            for u in users.values()
        ]
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp")
    temp.touch(mode=0o600)
    temp.chmod(0o600)
    temp.write_text(yaml.safe_dump(doc, sort_keys=False))
    os.replace(temp, path)


class UserStore:
    """The users file, read again whenever it changes on disk."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._users: dict[str, User] = {}
        self.users()  # a bad or missing file stops the console at start-up

    def users(self) -> dict[str, User]:
        try:
            info = self.path.stat()
        except OSError as exc:
            raise ConfigError(
                f"{self.path}: no console users file ({exc.strerror}); create one with "
                "`siesa-sync console add-user NAME --role operator`"
            ) from None
        with self._lock:
            if (info.st_mtime_ns, info.st_size) != self._stamp:
                self._users = parse_users(self.path)
                self._stamp = (info.st_mtime_ns, info.st_size)
            return self._users

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def authenticate(self, name: str, password: str) -> User | None:
        user = self.get(name)
        try:
            _hasher.verify(user.password_hash if user else _DUMMY, password)
        except (VerificationError, InvalidHashError):
            return None
        return user
