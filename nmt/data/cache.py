"""The data cache: a folder of entries, each named by a hash of what it was made from, never changed.

An entry is built in a `tmp-PID-TOKEN-HOST` folder beside it, its `meta.json` (the size of every
file) written last, and renamed into place: a preparation killed at any moment leaves only a tmp-
folder, which a later run removes once that process is gone. An entry whose files are missing or
of another size is removed with a warning and built again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from pathlib import Path

from nmt.config import DataConfig
from nmt.errors import NmtError

log = logging.getLogger("nmt.prepare")

META = "meta.json"
RACY_NS = 2_000_000_000  # a file changed this recently may change again within the same mtime tick


def cache_root(cfg: DataConfig) -> Path:
    """data.cache_dir, else $NMT_CACHE_DIR, else $XDG_CACHE_HOME/nmt or ~/.cache/nmt."""
    given = cfg.cache_dir or os.environ.get("NMT_CACHE_DIR", "")
    if given:
        return Path(given).expanduser().resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nmt"


def content_hash(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:24]


class Digests:
    """SHA-256 of data files, remembered by (size, mtime, ctime, inode) so that unchanged files are not
    read again on every run (as git's index does; files changed in the last 2 s are always read)."""

    def __init__(self, root: Path):
        self.path = root / "digests.json"
        try:
            self.known = json.loads(self.path.read_text())
        except (OSError, ValueError):
            self.known = {}

    def __call__(self, path: Path) -> str:
        try:
            st = path.stat()
        except FileNotFoundError:
            raise NmtError(f"{path}: file not found") from None
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        key = str(path.resolve())
        if self.known.get(key, {}).get("stat") == stamp:
            return self.known[key]["sha256"]
        digest = hashlib.sha256()
        try:
            with open(path, "rb") as f:
                while block := f.read(1 << 22):
                    digest.update(block)
        except OSError as err:
            raise NmtError(f"{path}: cannot read ({err.strerror})") from None
        if time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > RACY_NS:
            self.known[key] = {"stat": stamp, "sha256": digest.hexdigest()}
        return digest.hexdigest()

    def save(self) -> None:
        tmp = self.path.with_name(f".digests-{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.known))
            tmp.replace(self.path)
        except OSError:  # only a shortcut is lost
            tmp.unlink(missing_ok=True)


class Builds:
    """tmp- folders for entries being built; whatever was not published is removed on exit."""

    def __init__(self, root: Path):
        self.root, self.folders = root, []

    def new(self) -> Path:
        folder = self.root / f"tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}-{socket.gethostname()}"
        folder.mkdir()
        self.folders.append(folder)
        return folder

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        for folder in self.folders:
            shutil.rmtree(folder, ignore_errors=True)


def open_root(root: Path) -> None:
    """Create the cache folder and remove the tmp- folders of preparations on this host that died."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise NmtError(f"{root}: cannot create the data cache ({err.strerror}); "
                       "set data.cache_dir or $NMT_CACHE_DIR") from None
    for folder in root.glob("tmp-*"):
        parts = folder.name.split("-", 3)
        if len(parts) == 4 and parts[3] == socket.gethostname() and parts[1].isdigit() and not _alive(int(parts[1])):
            log.info("removing %s, left by a preparation that did not finish", folder)
            shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(folder: Path, entry: Path, **meta) -> None:
    """Mark `folder` complete (meta.json: its files' sizes and `meta`) and rename it to `entry`."""
    sizes = {p.name: p.stat().st_size for p in sorted(folder.iterdir())}
    (folder / META).write_text(json.dumps({"files": sizes, **meta}, indent=1))
    entry.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.rename(folder, entry)
    except OSError:
        if not (entry / META).exists():
            raise
        shutil.rmtree(folder, ignore_errors=True)  # another process published the same entry first


def read_entry(entry: Path) -> dict | None:
    """The meta.json of a complete, intact entry; None if there is none (a damaged one is removed)."""
    if not entry.exists():
        return None
    try:
        meta = json.loads((entry / META).read_text())
        for name, size in meta["files"].items():
            if (entry / name).stat().st_size != size:
                raise ValueError(f"{name} is not the size it was written with")
        return meta
    except (OSError, ValueError, KeyError, TypeError) as err:
        discard(entry, err)
        return None


def discard(entry: Path, reason) -> None:
    log.warning("%s: damaged cache entry (%s); preparing it again", entry, reason)
    shutil.rmtree(entry, ignore_errors=True)
