"""One writer per run dir: an OS advisory lock (``flock``) on ``RUN_DIR/.lock``, held while a run writes.

The kernel releases the lock when the holding process dies, however it dies (SIGKILL included), so a
lock left by a dead process never blocks a resume: the file stays, the lock does not. A second
process that finds the dir locked refuses at once (or, with ``wait_s``, after waiting that long: a
requeued SLURM task whose predecessor is still shutting down), naming the holder from the file's
contents (pid, host, start time) and what to do.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from pathlib import Path

from ..errors import UserError

FILENAME = ".lock"


class RunLocked(UserError):
    """Another live process holds the run dir: nothing of this run may be written there."""


class RunLock:
    def __init__(self, run_dir: str | Path, wait_s: float = 0.0, poll_s: float = 0.5):
        self.path = Path(run_dir) / FILENAME
        self.wait_s, self.poll_s = wait_s, poll_s
        self.fd: int | None = None

    def __enter__(self) -> RunLock:
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.wait_s
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() >= deadline:
                    holder = self.holder()
                    os.close(self.fd)
                    self.fd = None
                    raise RunLocked(self._message(holder)) from None
                time.sleep(self.poll_s)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, json.dumps(info).encode(), 0)
        return self

    def holder(self) -> dict:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _message(self, h: dict) -> str:
        who = f"pid {h.get('pid', '?')} on {h.get('host', '?')}, started {h.get('started', '?')}"
        waited = f" (waited {self.wait_s:g} s)" if self.wait_s else ""
        return (f"the run dir {self.path.parent} is in use by another process ({who}){waited}: wait for it to end "
                f"or stop it, or give this run its own dir (hydra.run.dir=...)")

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
