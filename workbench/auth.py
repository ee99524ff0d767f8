"""Users, hashed passwords and roles. Without an auth file the app serves one local admin.

The auth file is JSON: ``{"users": [{"username": ..., "password_hash": ..., "role": ...}]}``,
written by ``workbench users add``. Hashes are scrypt with a per-user salt. Changes to the file
take effect on the next request (``Users``).
"""
from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from storage import write_json_atomic
from workbench.safe_text import display_name

log = logging.getLogger(__name__)

ROLES = ("admin", "trainer", "annotator", "viewer")
LOCAL_USER = "local"
# The one table of who may do what. Every handler that changes anything or starts generation
# checks its action on the server (tests/test_auth.py walks every API endpoint with every role).
ACTIONS = {
    "view": ROLES,                                     # Monitor, the scoreboard, reports
    "chat": ("admin", "trainer", "annotator"),         # Chat, corpus search, sending a turn to Annotate
    "annotate": ("admin", "trainer", "annotator"),     # vote, undo one's own votes
    "generate": ("admin", "trainer"),                  # create A/B pairs (queues generation)
    "launch": ("admin", "trainer"),                    # train, evaluate, self-test, resume
    "cancel": ("admin", "trainer"),
    "delete": ("admin", "trainer"),                    # delete a finished run
    "corpus": ("admin", "trainer"),                    # upload, delete and re-index documents
    "data": ("admin", "trainer"),                      # merge votes, import SFT rows, edit evaluation sets
    "system_prompt": ("admin", "trainer"),             # the workspace's system prompt (chat, pairs, training)
    "unload": ("admin",),                              # free the models the web process holds for everyone
    "audit": ("admin",),                               # read the audit log
}
PERMISSIONS = {role: {action for action, roles in ACTIONS.items() if role in roles} for role in ROLES}


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


@functools.cache
def _decoy_hash() -> str:
    """A stored hash no password matches, for names that have none: checking a password against
    it costs the one scrypt a real check costs, from the first sign-in on (a digest made by
    scrypt itself would cost the first unknown name a second one, which a clock could tell)."""
    return "scrypt$" + base64.b64encode(os.urandom(16)).decode() + "$" + base64.b64encode(os.urandom(64)).decode()


@dataclass(frozen=True)
class User:
    username: str
    role: str

    def can(self, action: str) -> bool:
        return action in PERMISSIONS.get(self.role, set())


class Users:
    """The configured users, or the single local admin when no auth file is set.

    The auth file is read again whenever it changes (its inode, size or modification time, one
    ``stat`` per look-up): ``workbench users add / passwd / disable`` take effect on the next
    request, without a restart. A file that turns unreadable or invalid after the start signs
    nobody in until it is fixed (the reason is logged once), rather than keeping stale accounts.
    """

    def __init__(self, auth_file: Path | None):
        self.auth_file = Path(auth_file) if auth_file else None
        self._lock = threading.Lock()
        self._signature: tuple | None = None
        self._records: dict[str, dict] = {}
        self._broken: str | None = None
        if self.auth_file:
            self._records, self._signature = self._load(), self._stat()

    @property
    def enabled(self) -> bool:
        return self.auth_file is not None

    def _stat(self) -> tuple | None:
        try:
            st = os.stat(self.auth_file)
        except OSError:
            return None
        return st.st_ino, st.st_size, st.st_mtime_ns

    def _current(self) -> dict[str, dict]:
        if not self.enabled:
            return {}
        signature = self._stat()
        with self._lock:
            if signature != self._signature:
                try:
                    records, broken = self._load(), None
                except Exception as exc:  # noqa: BLE001 - any bad file signs nobody in, stale accounts included
                    records = {}
                    broken = str(exc) if isinstance(exc, ValueError) else f"auth file {self.auth_file}: {exc!r}"
                    if broken != self._broken:
                        log.error("%s: nobody can sign in until it is fixed", broken)
                self._records, self._broken, self._signature = records, broken, signature
            return self._records

    def _load(self) -> dict[str, dict]:
        try:
            data = json.loads(self.auth_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ValueError(f"auth file not found: {self.auth_file}") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"auth file {self.auth_file} is not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("users", []), list) \
                or not all(isinstance(e, dict) for e in data.get("users", [])):
            raise ValueError(f"auth file {self.auth_file}: expected {{\"users\": [{{\"username\": ..., ...}}, ...]}}")
        records = {}
        for entry in data.get("users", []):
            if entry.get("role") not in ROLES or not entry.get("username") or not entry.get("password_hash"):
                raise ValueError(f"auth file {self.auth_file}: bad user entry {entry.get('username')!r}"
                                 f" (needs username, password_hash and a role in {ROLES})")
            if not entry.get("disabled"):
                records[entry["username"]] = entry
        return records

    def verify(self, username: str, password: str) -> bool:
        """The same scrypt work for an unknown or disabled name as for a known one, so names
        cannot be found by timing."""
        record = self._current().get(username)
        ok = verify_password(password, record["password_hash"] if record else _decoy_hash())
        return bool(record) and ok

    def stamp(self, username: str | None) -> str | None:
        """What a signed-in session of ``username`` stays valid under: a digest of the user's
        password hash. None for a user that is unknown or disabled. A new password changes it,
        which ends the sessions opened with the old one."""
        record = self._current().get(username or "")
        if record is None:
            return None
        return hashlib.sha256(record["password_hash"].encode()).hexdigest()[:16]

    def get(self, username: str | None) -> User:
        if not self.enabled:
            return User(LOCAL_USER, "admin")
        record = self._current().get(username or "")
        if record is None:
            raise PermissionDenied("not logged in")
        return User(record["username"], record["role"])

    def require(self, username: str | None, action: str) -> User:
        user = self.get(username)
        if not user.can(action):
            raise PermissionDenied(f"user {user.username!r} (role {user.role}) may not {action}")
        return user


def _read_file(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"users": []}


def _write_file(path: Path, users: list[dict]) -> None:
    write_json_atomic(path, {"users": users}, file_mode=0o600)


def add_user(auth_file: Path, username: str, password: str, role: str) -> None:
    """Create or replace a user in the auth file (created if missing)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not username or not password:
        raise ValueError("username and password must not be empty")
    if display_name(username) != username or username != username.strip() or len(username) > 64:
        raise ValueError(f"user name {username!r}: at most 64 characters, no spaces around it, no control "
                         "or text-direction characters")
    path = Path(auth_file)
    users = [u for u in _read_file(path).get("users", []) if u.get("username") != username]
    users.append({"username": username, "password_hash": hash_password(password), "role": role})
    _write_file(path, users)


def change_user(auth_file: Path, username: str, password: str | None = None, disabled: bool | None = None,
                role: str | None = None) -> dict:
    """A new password, role or disabled flag for an existing user; the entry as saved (no hash)."""
    path = Path(auth_file)
    users = _read_file(path).get("users", [])
    entry = next((u for u in users if u.get("username") == username), None)
    if entry is None:
        raise ValueError(f"no user {username!r} in {path}")
    if password is not None:
        if not password:
            raise ValueError("the password must not be empty")
        entry["password_hash"] = hash_password(password)
    if role is not None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        entry["role"] = role
    if disabled is not None:
        entry["disabled"] = disabled
    _write_file(path, users)
    return {k: v for k, v in entry.items() if k != "password_hash"}


def list_users(auth_file: Path) -> list[dict]:
    """Each user's name, role and whether it is disabled; never the hashes."""
    return [{"username": u.get("username"), "role": u.get("role"), "disabled": bool(u.get("disabled"))}
            for u in _read_file(Path(auth_file)).get("users", [])]
