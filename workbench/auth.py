"""Users, hashed passwords and roles. Without an auth file the app serves one local admin.

The auth file is JSON: ``{"users": [{"username": ..., "password_hash": ..., "role": ...}]}``,
written by ``workbench users add``. Hashes are scrypt with a per-user salt.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from dataclasses import dataclass
from pathlib import Path

from storage import write_json_atomic

ROLES = ("admin", "annotator")
LOCAL_USER = "local"
# What each role may do. Handlers that launch, cancel or delete check this on the server.
PERMISSIONS = {
    "admin": {"launch", "cancel", "delete", "annotate", "chat"},
    "annotator": {"annotate", "chat"},
}


class PermissionDenied(PermissionError):
    pass


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$" + base64.b64encode(salt).decode() + "$" + base64.b64encode(digest).decode()


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, salt_b64, digest_b64 = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    expected = hash_password(password, base64.b64decode(salt_b64)).split("$")[2]
    return hmac.compare_digest(expected, digest_b64)


@dataclass(frozen=True)
class User:
    username: str
    role: str

    def can(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, set())


class Users:
    """The configured users, or the single local admin when no auth file is set."""

    def __init__(self, auth_file: Path | None):
        self.auth_file = Path(auth_file) if auth_file else None
        self._records = self._load() if self.auth_file else {}

    @property
    def enabled(self) -> bool:
        return self.auth_file is not None

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.auth_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"auth file not found: {self.auth_file}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"auth file {self.auth_file} is not valid JSON: {exc}") from None
        records = {}
        for entry in data.get("users", []):
            if entry.get("role") not in ROLES or not entry.get("username") or not entry.get("password_hash"):
                raise ValueError(f"auth file {self.auth_file}: bad user entry {entry.get('username')!r}"
                                 f" (needs username, password_hash and a role in {ROLES})")
            records[entry["username"]] = entry
        return records

    def verify(self, username: str, password: str) -> bool:
        record = self._records.get(username)
        return bool(record) and verify_password(password, record["password_hash"])

    def get(self, username: str | None) -> User:
        if not self.enabled:
            return User(LOCAL_USER, "admin")
        record = self._records.get(username or "")
        if record is None:
            raise PermissionDenied("not logged in")
        return User(record["username"], record["role"])

    def require(self, username: str | None, action: str) -> User:
        user = self.get(username)
        if not user.can(action):
            raise PermissionDenied(f"user {user.username!r} (role {user.role}) may not {action}")
        return user


def add_user(auth_file: Path, username: str, password: str, role: str) -> None:
    """Create or replace a user in the auth file (created if missing)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {ROLES}")
    if not username or not password:
        raise ValueError("username and password must not be empty")
    path = Path(auth_file)
    data = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"users": []}
    users = [u for u in data.get("users", []) if u.get("username") != username]
    users.append({"username": username, "password_hash": hash_password(password), "role": role})
    write_json_atomic(path, {"users": users}, file_mode=0o600)
