"""A private, throwaway PostgreSQL server for tests: own data directory, Unix socket only.

The server listens on no TCP address at all (``listen_addresses=''``): clients reach it through a
socket in a fresh temporary directory, with ``trust`` authentication, and it is stopped and its
directory removed on exit. PostgreSQL refuses to run as root, so as root the server runs as the
``postgres`` account the Debian package creates.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

#: The socket's port number only names the socket file; no TCP port is opened.
SOCKET_PORT = 5432
SUPERUSER = "postgres"


@dataclass(frozen=True)
class PostgresServer:
    """Where a running throwaway server accepts connections."""

    socket_dir: str
    port: int
    user: str = SUPERUSER
    dbname: str = "postgres"

    def conninfo(self) -> dict[str, str | int]:
        """Keyword arguments for ``psycopg.connect`` (libpq ``host`` may be a socket directory)."""
        return {
            "host": self.socket_dir,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
        }


def find_bin_dir() -> Path | None:
    """The directory holding ``initdb`` and ``pg_ctl``: ``$PG_BINDIR``, Debian's, or ``$PATH``."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True
    )
    found = shutil.which("initdb")
    candidates.append(str(Path(found).parent) if found else "")
    for candidate in filter(None, candidates):
        if (Path(candidate) / "initdb").is_file() and (Path(candidate) / "pg_ctl").is_file():
            return Path(candidate)
    return None


def _run(argv: list[str], as_user: str | None) -> None:
    if as_user is not None:
        argv = ["runuser", "-u", as_user, "--", *argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")


@contextmanager
def postgres_server(bin_dir: Path) -> Iterator[PostgresServer]:
    """Initialise, start, yield, then stop and delete a server (UTF-8, C locale, UTC)."""
    as_user = SUPERUSER if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="pg-equivalence-"))
    data, log = root / "data", root / "server.log"
    if as_user is not None:
        account = pwd.getpwnam(as_user)
        os.chown(root, account.pw_uid, account.pw_gid)
    started = False
    try:
        _run(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            as_user,
        )
        options = (
            f"-k {root} -p {SOCKET_PORT} -c listen_addresses='' -c TimeZone=UTC "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        try:
            _run(
                [
                    str(bin_dir / "pg_ctl"),
                    "start",
                    "-w",
                    "-t",
                    "60",
                    "-D",
                    str(data),
                    "-l",
                    str(log),
                    "-o",
                    options,
                ],
                as_user,
            )
        except RuntimeError as exc:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{exc}\nserver log:\n{tail}") from None
        started = True
        yield PostgresServer(str(root), SOCKET_PORT)
    finally:
        if started:
            _run([str(bin_dir / "pg_ctl"), "stop", "-w", "-m", "fast", "-D", str(data)], as_user)
        shutil.rmtree(root, ignore_errors=True)
