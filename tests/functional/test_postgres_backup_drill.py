"""The PostgreSQL backup drill, as the README tells an operator to run it: a cluster archiving its WAL to a
pgBackRest repository, a full backup taken while the gateway (two workers) serves a mixed load, the data
backup of what is not in the database (`epr-gateway backup`: witness, signing key, settings; the keyring
apart), `pgbackrest verify`, a point-in-time restore into a fresh cluster on another port, then
`epr-gateway restore` + `check-restore` against it. Every document acknowledged before the target time is
there and opens; what came later is not; RPO and RTO printed. Its own clusters (archiving needs settings
the shared test cluster does not have), on ports of their own."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from functional.serving import MixedLoad, ServingGateway, free_port, restored_env

pytestmark = pytest.mark.postgres
STANZA = "drill"


def as_postgres(*command: str, check: bool = True) -> subprocess.CompletedProcess:
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, timeout=300)
    assert not check or done.returncode == 0, f"{command[0]}: {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done


class Drill:
    """A directory owned by the database's user: the cluster, the pgBackRest repository, the restore."""

    def __init__(self) -> None:
        self.base = Path(f"/tmp/epr-pgbackrest-drill-{uuid.uuid4().hex[:8]}")
        for part in ("repo", "log", "lock", "spool"):
            (self.base / part).mkdir(parents=True)
        self.bin = sorted(Path("/usr/lib/postgresql").glob("*/bin"))[-1]
        self.port, self.restored_port = free_port(), free_port()
        self.config = self.base / "pgbackrest.conf"
        self.config.write_text(f"""[global]
repo1-path={self.base / 'repo'}
repo1-retention-full=1
log-path={self.base / 'log'}
lock-path={self.base / 'lock'}
spool-path={self.base / 'spool'}
log-level-console=warn
start-fast=y

[{STANZA}]
pg1-path={self.base / 'data'}
pg1-port={self.port}
pg1-socket-path={self.base}
pg1-user=epr
""")
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres")
            for path in self.base.rglob("*"):
                shutil.chown(path, "postgres")

    def pgbackrest(self, *args: str) -> subprocess.CompletedProcess:
        return as_postgres("pgbackrest", f"--config={self.config}", f"--stanza={STANZA}", *args)

    def start(self, data: Path, port: int, *options: str) -> None:
        as_postgres(str(self.bin / "pg_ctl"), "-D", str(data), "-l", str(data.parent / f"{data.name}.log"), "-w",
                    "-t", "120", "-o", " ".join([f"-p {port} -k {self.base} -c listen_addresses=127.0.0.1",
                                                 *options]), "start")

    def stop(self, data: Path) -> None:
        if (data / "postmaster.pid").exists():
            as_postgres(str(self.bin / "pg_ctl"), "-D", str(data), "-m", "fast", "stop", check=False)

    def url(self, port: int) -> str:
        return f"postgresql+psycopg://epr@127.0.0.1:{port}/epr_drill"


@pytest.fixture
def drill():
    made = Drill()
    yield made
    made.stop(made.base / "data")
    made.stop(made.base / "restored")
    shutil.rmtree(made.base, ignore_errors=True)



def test_full_backup_and_wal_during_load_point_in_time_restore_and_check(drill, tmp_path, capsys):
    data = drill.base / "data"
    as_postgres(str(drill.bin / "initdb"), "-D", str(data), "-U", "epr", "--auth=trust", "-E", "UTF8")
    with open(data / "postgresql.conf", "a") as conf:  # every WAL segment to the repository, at least every 2 s
        conf.write(f"wal_level = replica\narchive_mode = on\narchive_timeout = 2\n"
                   f"archive_command = 'pgbackrest --config={drill.config} --stanza={STANZA} archive-push %p'\n")
    drill.start(data, drill.port)
    as_postgres(str(drill.bin / "createdb"), "-h", "127.0.0.1", "-p", str(drill.port), "-U", "epr", "epr_drill")
    drill.pgbackrest("stanza-create")
    drill.pgbackrest("check")

    with ServingGateway(tmp_path / "data", workers=2, EPR_DATABASE_URL=drill.url(drill.port),
                        EPR_REDIS_URL=os.environ["EPR_TEST_REDIS_URL"]) as gateway:
        with MixedLoad(gateway) as load:
            load.wait_for(provided=4)
            backup_started = time.monotonic()
            drill.pgbackrest("backup", "--type=full")  # while the load runs
            backup_seconds = time.monotonic() - backup_started
            gateway.cli("backup", "--to", str(tmp_path / "files"), "--keys-to", str(tmp_path / "keys"))
            load.wait_for(provided=len(load.provided) + 4)  # WAL archived behind the full backup
            target = datetime.now(UTC)
            time.sleep(1.5)
            load.wait_for(provided=len(load.provided) + 3)  # documents well after the target
        with create_engine(drill.url(drill.port)).connect() as connection:  # the WAL holding the target, archived
            connection.execute(text("SELECT pg_switch_wal()"))
    assert load.failures == []
    before = {entry for entry, _, at in load.provided if at < target.timestamp()}
    after = {entry for entry, _, at in load.provided if at > target.timestamp() + 1}
    drill.pgbackrest("verify")
    drill.stop(data)  # the disk is lost

    restore_started = time.monotonic()
    restored = drill.base / "restored"
    drill.pgbackrest("restore", f"--pg1-path={restored}", "--type=time", "--target-action=promote",
                     f"--target={target.strftime('%Y-%m-%d %H:%M:%S.%f+00')}")
    drill.start(restored, drill.restored_port, "-c archive_mode=off")
    engine = create_engine(drill.url(drill.restored_port))
    deadline = time.monotonic() + 120
    while True:
        with engine.connect() as connection:
            if not connection.execute(text("SELECT pg_is_in_recovery()")).scalar_one():
                break
        assert time.monotonic() < deadline, "the restored cluster did not finish its recovery"
        time.sleep(0.2)
    gateway.cli("restore", "--from", str(tmp_path / "files"), "--keys-from", str(tmp_path / "keys"),
                "--data-dir", str(tmp_path / "new"), "--database-url", drill.url(drill.restored_port))
    checked = gateway.cli("check-restore", **restored_env(tmp_path / "new"))
    rto = time.monotonic() - restore_started
    with engine.connect() as connection:
        stored = set(connection.execute(text("SELECT id FROM document_entry")).scalars())
        last = connection.execute(text("SELECT max(recorded_at) FROM audit_record")).scalar_one()
    engine.dispose()

    assert "restore checks out" in checked.stdout, checked.stdout + checked.stderr
    assert "0 do not open or differ" in checked.stdout and "0 do not unwrap" in checked.stdout
    assert before and before <= stored  # everything acknowledged before the target is back, and opens
    assert after and not after & stored  # what came later is beyond the recovery point
    rpo = (target.replace(tzinfo=None) - last).total_seconds()
    assert 0 <= rpo < 5
    with capsys.disabled():
        print(f"\nPostgreSQL drill (pgBackRest): full backup {backup_seconds:.1f} s under load; point-in-time "
              f"restore to {target:%H:%M:%S.%f}; last exchange restored {rpo:.2f} s before the target (RPO with "
              f"WAL archiving: archive_timeout); RTO {rto:.1f} s (restore, recovery, check-restore)")
