"""Shared helpers for rtb's whole-process benchmarks (stdlib only).

measure() runs a command N times and reports the median wall time (started
directly, reaped with a blocking wait4) and, from a few extra runs, the peak
RSS of the measured process itself. The RSS comes from GNU time's %M when
/usr/bin/time exists: a child forked from this Python process would carry
Python's own ~20 MiB high-water mark through exec, so os.wait4's rusage
cannot be used directly. table() prints a markdown table.
"""
import os
import statistics
import subprocess
import tempfile
import sys
import threading
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RTB = os.environ.get("RTB_BIN", os.path.join(ROOT, "target", "release", "rtb"))
SHARED = os.path.join(os.path.dirname(ROOT), "shared")
REFERENCE = os.path.join(SHARED, "reference", "resilience_toolbox.py")


@dataclass
class Stats:
    median_s: float
    max_rss_kib: int
    runs: int
    codes: list

    @property
    def median_ms(self):
        return self.median_s * 1000.0


GNU_TIME = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None


def run_once(argv, env=None, cwd=None, stdin=None, timeout=120, rss=False):
    """Runs argv once; returns (wall seconds, peak RSS KiB or None, exit code).

    Timing runs start the command directly and block in wait4 (no polling,
    no wrapper), so only the command's own cost is measured. With rss=True
    the command runs under GNU time for its peak RSS instead."""
    rss_file = None
    if rss and GNU_TIME:
        fd, rss_file = tempfile.mkstemp(prefix="rtb-bench-rss.")
        os.close(fd)
        argv = [GNU_TIME, "-q", "-f", "%M", "-o", rss_file] + list(argv)
    start = time.perf_counter()
    p = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if stdin is not None:
        p.stdin.write(stdin)
        p.stdin.close()
    # A bounded wait: a watchdog kills a command that outlives `timeout`.
    watchdog = threading.Timer(timeout, p.kill)
    watchdog.start()
    try:
        _, status, ru = os.wait4(p.pid, 0)
    finally:
        watchdog.cancel()
    wall = time.perf_counter() - start
    p.returncode = os.waitstatus_to_exitcode(status)
    peak = None
    if rss_file:
        try:
            with open(rss_file) as f:
                peak = int(f.read().strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            peak = None
        os.unlink(rss_file)
    return wall, peak, p.returncode


def measure(argv_or_fn, runs=20, warmup=2, rss_runs=3, **kw):
    """Median wall time over `runs` runs, and the peak RSS over `rss_runs`
    more under GNU time. argv_or_fn may be a function of the run index
    returning argv (for distinct paths/IDs)."""
    get = argv_or_fn if callable(argv_or_fn) else (lambda i: argv_or_fn)
    for i in range(warmup):
        run_once(get(-1 - i), **kw)
    walls, codes = [], []
    for i in range(runs):
        w, _, c = run_once(get(i), **kw)
        walls.append(w)
        codes.append(c)
    peaks = []
    for i in range(rss_runs if GNU_TIME else 0):
        _, r, _ = run_once(get(runs + i), rss=True, **kw)
        if r is not None:
            peaks.append(r)
    return Stats(statistics.median(walls), max(peaks) if peaks else None, runs, codes)


def fmt_ms(s):
    return "n/a" if s is None else f"{s * 1000:.1f} ms"


def fmt_mib(kib):
    return "n/a" if kib is None else f"{kib / 1024:.1f} MiB"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.2f}x"


def table(title, header, rows, note=None):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join("---" for _ in header) + "|")
    for r in rows:
        print("| " + " | ".join(str(c) for c in r) + " |")
    if note:
        print(f"\n{note}")
    sys.stdout.flush()


def reference_python():
    """A python with requests for the reference script, made once in a venv
    under target/; None (with a reason) where ../shared is absent."""
    if not os.path.exists(REFERENCE):
        return None, f"reference column skipped: {REFERENCE} not found"
    venv = os.path.join(ROOT, "target", "bench-venv")
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        subprocess.run([sys.executable, "-m", "venv", venv], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "requests"], check=True)
    return py, None


def summary(area, measure_name, rtb, against, other, target, met):
    """Records one row of bench/run's closing summary table (when BENCH_SUMMARY
    names a file); every script also prints its own detailed tables."""
    import json

    path = os.environ.get("BENCH_SUMMARY")
    if not path:
        return
    row = {
        "area": area,
        "measure": measure_name,
        "rtb": rtb,
        "against": against,
        "other": other,
        "target": target,
        "met": "yes" if met else "no",
    }
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")
