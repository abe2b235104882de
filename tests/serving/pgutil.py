"""A real PostgreSQL server for the review store's tests: initdb in a temporary folder, started
with pg_ctl on a free loopback port, trust authentication, stopped at the end.

Debian's ``postgresql`` package provides the binaries (``.ci/run`` installs it where missing); a
machine without them fails these tests rather than skipping them. As root, the server runs as the
``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from serverutil import free_port


def pg_bin(name: str) -> str | None:
    """``name`` from PATH, else from the newest ``/usr/lib/postgresql/*/bin``."""
    found = shutil.which(name)
    if found:
        return found
    versions = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return versions[-1] if versions else None


@dataclass
class PgServer:
    """A running server: its SQLAlchemy URL, data folder and the command prefix to run as its owner."""

    url: str
    data: Path
    port: int
    as_owner: list[str]

    def _ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        ctl = pg_bin("pg_ctl")
        assert ctl is not None
        return subprocess.run(
            [*self.as_owner, ctl, "-D", str(self.data), *args], capture_output=True, text=True, timeout=120
        )

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        out = self._ctl("-w", "-t", "60", "-l", str(self.data / "server.log"), "-o", opts, "start")
        if out.returncode != 0:
            log = (
                (self.data / "server.log").read_text(errors="replace")
                if (self.data / "server.log").exists()
                else ""
            )
            raise RuntimeError(f"pg_ctl start failed: {out.stdout}{out.stderr}\n{log}")

    def stop(self) -> None:
        self._ctl("-w", "-m", "fast", "stop")


def start_postgres() -> PgServer:
    """initdb + start; raises RuntimeError (the caller fails the test) when it cannot."""
    initdb = pg_bin("initdb")
    if initdb is None or pg_bin("pg_ctl") is None:
        raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (as .ci/run does).")
    root = Path(tempfile.mkdtemp(prefix="authlens-pg-"))
    data = root / "data"
    as_owner: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses root: run it as the postgres user
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
        as_owner = ["runuser", "-u", "postgres", "--"]
    out = subprocess.run(
        [*as_owner, initdb, "-D", str(data), "-U", "authlens", "--auth=trust", "-E", "UTF8", "--no-sync"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    if out.returncode != 0:
        raise RuntimeError(f"initdb failed: {out.stdout}{out.stderr}")
    port = free_port()
    server = PgServer(f"postgresql+psycopg://authlens@127.0.0.1:{port}/postgres", data, port, as_owner)
    server.start()
    deadline = time.monotonic() + 30
    import sqlalchemy as sa

    while True:
        try:
            engine = sa.create_engine(server.url)
            with engine.connect() as conn:
                conn.execute(sa.text("select 1"))
            engine.dispose()
            return server
        except sa.exc.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)


def remove(server: PgServer) -> None:
    server.stop()
    shutil.rmtree(server.data.parent, ignore_errors=True)
