"""A real PostgreSQL server for the feedback store's tests: Debian's ``postgresql`` binaries, a cluster made
with initdb in a temporary directory, served on a free loopback port (as the ``postgres`` user when the tests
run as root: PostgreSQL refuses to run as root)."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import ManagedProcess, free_port


def accepts_queries(url: str):
    """Ready when a session can run a query (the port opens before the server has finished starting)."""
    def check() -> bool:
        import psycopg

        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True
        except psycopg.Error:
            return False
    return check


def postgres_bin() -> Path | None:
    found = shutil.which("initdb") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)),
                                           None)
    return Path(found).parent if found else None


@dataclass
class Postgres:
    server: ManagedProcess
    url: str

    def restart(self) -> None:
        self.server.start()


@pytest.fixture(scope="module")
def postgres(tmp_path_factory):
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL's binaries (initdb, postgres) are not installed: apt-get install postgresql "
                    "(.ci/run installs it)")
    as_user: list[str] = []
    root = Path(tempfile.mkdtemp(prefix="feedback-pg-"))  # not pytest's tmp dir: that is private to root
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")  # made by Debian's package
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    try:
        data, sockets = root / "data", root / "sockets"
        subprocess.run([*as_user, "mkdir", str(sockets)], check=True)
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                        "-E", "UTF8", "--no-sync"], check=True, capture_output=True, timeout=120)
        port = free_port()
        url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        server = ManagedProcess("postgres", [*as_user, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                                             "-k", str(sockets), "-c", "listen_addresses=127.0.0.1"],
                                tmp_path_factory.mktemp("postgres") / "postgres.log", ready=accepts_queries(url),
                                port=port)
        with server:
            yield Postgres(server, url)
    finally:
        shutil.rmtree(root, ignore_errors=True)
