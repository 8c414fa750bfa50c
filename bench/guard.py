#!/usr/bin/env python3
"""rtb safe: latency per ID and throughput under contention.

Latency: `rtb safe ID -- true` over N distinct IDs (default 2,000) on
SQLite and on PostgreSQL, side by side with
  - the shell idiom `flock LOCK sh -c 'test -e MARKER || { true && touch MARKER; }'`
    (keeps nothing durable: no fsync, no owner, no lease);
  - the durable floor: the claim and the done commits done in-process, one
    loop, no process starts. SQLite: Python's sqlite3 with rtb's pragmas
    (WAL, synchronous=FULL, BEGIN IMMEDIATE, the same table). PostgreSQL:
    one psql session running the same two autocommit statements per ID.
  - the target: 1.5 x (floor + two process starts), a process start being
    the median wall time of spawning `true`.
Contention: 8 parallel workers each try all of M IDs (default 1,000) in the
same order with a counting CMD; executions must equal M exactly.

Environment: GUARD_BENCH_IDS (N), GUARD_BENCH_CONTENTION_IDS (M),
RTB_TEST_POSTGRES_URL (PostgreSQL rows; skipped without it), RTB_BIN.
Build first: cargo build --release.
"""
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import RTB, fmt_ms, measure, run_once, summary, table  # noqa: E402

N = int(os.environ.get("GUARD_BENCH_IDS", "2000"))
M = int(os.environ.get("GUARD_BENCH_CONTENTION_IDS", "1000"))
WORKERS = 8
PG = os.environ.get("RTB_TEST_POSTGRES_URL", "")
FLOCK = shutil.which("flock")
PSQL = shutil.which("psql")


def env_with(**kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("RTB_")}
    e.update(kw)
    return e


def pg_schema():
    name = f"rtb_bench_{random.getrandbits(48):012x}"
    subprocess.run([PSQL, "-qX", PG, "-c", f"CREATE SCHEMA {name}"], check=True,
                   stdout=subprocess.DEVNULL)
    sep = "&" if "?" in PG else "?"
    return name, f"{PG}{sep}options=-csearch_path%3D{name}"


def pg_drop(name):
    subprocess.run([PSQL, "-qX", PG, "-c", f"DROP SCHEMA IF EXISTS {name} CASCADE"],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sqlite_floor(path, n):
    """Median seconds per ID of rtb's two commits, in-process."""
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=FULL")
    con.execute("PRAGMA busy_timeout=20000")
    con.execute(
        "CREATE TABLE IF NOT EXISTS rtb_guard (id TEXT PRIMARY KEY NOT NULL, state TEXT NOT NULL,"
        " fence INTEGER NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL, token TEXT NOT NULL,"
        " command TEXT NOT NULL, exit_status INTEGER, started_ms INTEGER NOT NULL,"
        " updated_ms INTEGER NOT NULL, lease_until_ms INTEGER NOT NULL, output BLOB,"
        " output_cut INTEGER NOT NULL DEFAULT 0)")
    times = []
    for i in range(n):
        key = f"floor-{i}"
        t0 = time.perf_counter()
        now = int(time.time() * 1000)
        con.execute("BEGIN IMMEDIATE")
        row = con.execute("SELECT state, fence FROM rtb_guard WHERE id = ?", (key,)).fetchone()
        assert row is None
        con.execute(
            "INSERT INTO rtb_guard (id, state, fence, host, pid, token, command, started_ms,"
            " updated_ms, lease_until_ms) VALUES (?, 'running', 1, 'h', 1, 't', 'true', ?, ?, ?)",
            (key, now, now, now + 30000))
        con.execute("COMMIT")
        con.execute("BEGIN IMMEDIATE")
        con.execute(
            "UPDATE rtb_guard SET state = 'done', exit_status = 0, updated_ms = ? WHERE id = ?"
            " AND token = 't' AND fence = 1 AND state = 'running'", (now, key))
        con.execute("COMMIT")
        times.append(time.perf_counter() - t0)
    con.close()
    return statistics.median(times)


def pg_floor(url, n):
    """Seconds per ID (mean over one psql session) of the two statements."""
    # Let rtb create the table exactly as it does.
    subprocess.run([RTB, "safe", "--store", url, "--list"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env_with())
    lines = []
    for i in range(n):
        k = f"floor-{i}"
        lines.append(
            "INSERT INTO rtb_guard (id, state, fence, host, pid, token, command, started_at,"
            " updated_at, lease_until) VALUES"
            f" ('{k}', 'running', 1, 'h', 1, 't', 'true', now(), now(),"
            " now() + 30000::bigint * interval '1 millisecond')"
            " ON CONFLICT (id) DO NOTHING RETURNING fence;")
        lines.append(
            "UPDATE rtb_guard SET state = 'done', exit_status = 0, updated_at = now()"
            f" WHERE id = '{k}' AND token = 't' AND fence = 1 AND state = 'running';")
    script = "\n".join(lines) + "\n"
    # psql's own start, measured alone, is taken off.
    t0 = time.perf_counter()
    subprocess.run([PSQL, "-qX", url, "-c", "SELECT 1"], check=True, stdout=subprocess.DEVNULL)
    start_cost = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([PSQL, "-qX", url], input=script.encode(), check=True,
                   stdout=subprocess.DEVNULL)
    total = time.perf_counter() - t0
    return max(total - start_cost, 0.0) / n


def latency():
    work = tempfile.mkdtemp(prefix="rtb-guard-bench-")
    env = env_with()
    rows = []
    start = measure(["true"], runs=200).median_s
    # The floor: in-process commits, same pragmas.
    floor = sqlite_floor(os.path.join(work, "floor.db"), N)
    target = 1.5 * (floor + 2 * start)

    db = os.path.join(work, "guard.db")
    cmd = measure(lambda i: [RTB, "safe", "--store", db, f"c-{i}", "--", "true"], runs=N,
                  env=env)
    assert set(cmd.codes) == {0}, cmd.codes
    bare = measure(lambda i: [RTB, "safe", "--store", db, f"b-{i}"], runs=N, env=env)
    assert set(bare.codes) == {0}, bare.codes
    skip = measure(lambda i: [RTB, "safe", "--store", db, f"c-{i % N}", "--", "true"],
                   runs=min(N, 500), env=env)
    opened = measure([RTB, "safe", "--store", db, "--show", "none"], runs=200, env=env)
    summary("safe", "`safe ID -- true` on SQLite", fmt_ms(cmd.median_s), "1.5x (floor + 2 starts)",
            fmt_ms(target), "<= target", cmd.median_s <= target)
    rows.append(["SQLite", fmt_ms(cmd.median_s), fmt_ms(bare.median_s), fmt_ms(skip.median_s),
                 fmt_ms(opened.median_s), fmt_ms(floor), fmt_ms(target),
                 f"{cmd.median_s / target:.2f}"])
    if PG and PSQL:
        name, url = pg_schema()
        try:
            pfloor = pg_floor(url, N)
            ptarget = 1.5 * (pfloor + 2 * start)
            pcmd = measure(lambda i: [RTB, "safe", "--store", url, f"c-{i}", "--", "true"],
                           runs=N, env=env)
            assert set(pcmd.codes) == {0}, pcmd.codes
            pbare = measure(lambda i: [RTB, "safe", "--store", url, f"b-{i}"], runs=N, env=env)
            pskip = measure(lambda i: [RTB, "safe", "--store", url, f"c-{i % N}", "--", "true"],
                            runs=min(N, 500), env=env)
            popened = measure([RTB, "safe", "--store", url, "--show", "none"], runs=200,
                              env=env)
            summary("safe", "`safe ID -- true` on PostgreSQL", fmt_ms(pcmd.median_s),
                    "1.5x (floor + 2 starts)", fmt_ms(ptarget), "<= target", pcmd.median_s <= ptarget)
            rows.append(["PostgreSQL", fmt_ms(pcmd.median_s), fmt_ms(pbare.median_s),
                         fmt_ms(pskip.median_s), fmt_ms(popened.median_s), fmt_ms(pfloor),
                         fmt_ms(ptarget), f"{pcmd.median_s / ptarget:.2f}"])
        finally:
            pg_drop(name)
    else:
        print("PostgreSQL rows skipped: RTB_TEST_POSTGRES_URL not set or psql missing",
              file=sys.stderr)
    if FLOCK:
        lock = os.path.join(work, "LOCK")
        fl = measure(lambda i: [FLOCK, lock, "sh", "-c",
                                f"test -e {work}/m-{i} || {{ true && touch {work}/m-{i}; }}"],
                     runs=N)
        summary("safe", "`safe ID -- true` on SQLite", fmt_ms(cmd.median_s), "flock idiom (not durable)",
                fmt_ms(fl.median_s), "(none)", True)
        rows.append(["flock + marker (not durable)", fmt_ms(fl.median_s), "", "", "", "", "",
                     ""])
    table(
        f"rtb safe: latency per ID, {N} distinct IDs (medians)",
        ["store", "`safe ID -- true`", "`safe ID`", "skip (done)", "start + open store",
         "durable floor", "target 1.5x(floor+2 starts)", "rtb / target"],
        rows,
        note=(f"Durable floor: the claim and done commits in-process (SQLite: Python sqlite3, "
              f"WAL, synchronous=FULL, BEGIN IMMEDIATE, rtb's table; PostgreSQL: one psql "
              f"session, rtb's INSERT ... ON CONFLICT and conditional UPDATE, autocommit). "
              f"A process start (`true`): {fmt_ms(start)}. start + open store: "
              f"`rtb safe --show` of a missing ID (rtb's start, opening the store, one read)."),
    )
    shutil.rmtree(work, ignore_errors=True)


def run_workers(worker, work, counter):
    """Runs WORKERS threads of `worker`; returns (lines in counter, seconds)
    and removes `work`."""
    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - t0
    with open(counter) as f:
        execs = sum(1 for _ in f)
    shutil.rmtree(work, ignore_errors=True)
    return execs, secs


def contention(store_name, store, ids):
    """8 workers, each over all IDs in the same order; returns (execs, secs)."""
    work = tempfile.mkdtemp(prefix="rtb-guard-contention-")
    counter = os.path.join(work, "count")
    env = env_with()
    failures = []

    def worker():
        for i in range(ids):
            p = subprocess.run(
                [RTB, "safe", "--store", store, f"k-{i}", "--", "sh", "-c",
                 f"echo {i} >> {counter}"],
                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            if p.returncode != 0:
                failures.append((i, p.returncode, p.stderr.decode()[-300:]))

    execs, secs = run_workers(worker, work, counter)
    if failures:
        print(f"{store_name}: {len(failures)} failed runs, first: {failures[0]}",
              file=sys.stderr)
    return execs, secs, len(failures)


def contention_flock(ids):
    work = tempfile.mkdtemp(prefix="rtb-guard-flock-")
    counter = os.path.join(work, "count")

    def worker():
        for i in range(ids):
            subprocess.run([FLOCK, f"{work}/LOCK", "sh", "-c",
                            f"test -e {work}/m-{i} || {{ echo {i} >> {counter} && "
                            f"touch {work}/m-{i}; }}"])

    execs, secs = run_workers(worker, work, counter)
    return execs, secs, 0


def contention_table():
    rows = []
    work = tempfile.mkdtemp(prefix="rtb-guard-cstore-")
    runs = [("SQLite", lambda: contention("SQLite", os.path.join(work, "g.db"), M))]
    name = None
    if PG and PSQL:
        name, url = pg_schema()
        runs.append(("PostgreSQL", lambda: contention("PostgreSQL", url, M)))
    if FLOCK:
        runs.append(("flock + marker (not durable)", lambda: contention_flock(M)))
    try:
        for label, fn in runs:
            execs, secs, failed = fn()
            ok = "yes" if execs == M and failed == 0 else "**NO**"
            if not label.startswith("flock"):
                summary("safe", f"{WORKERS} workers x {M} IDs on {label}: executions, throughput",
                        f"{execs}, {M / secs:.0f} IDs/s", "", "", f"executions = {M}",
                        execs == M and failed == 0)
            rows.append([label, f"{M}", f"{execs}", ok, f"{failed}", f"{secs:.1f} s",
                         f"{M / secs:.0f}"])
    finally:
        if name:
            pg_drop(name)
        shutil.rmtree(work, ignore_errors=True)
    table(
        f"rtb safe under contention: {WORKERS} workers x {M} IDs, same order",
        ["store", "IDs", "executions", "exactly once", "failed runs", "wall", "IDs/s"],
        rows,
        note="CMD: sh -c 'echo I >> count'; executions = lines in count.",
    )


def main():
    if not os.path.exists(RTB):
        sys.exit(f"{RTB} not found: cargo build --release first")
    latency()
    contention_table()


if __name__ == "__main__":
    main()
