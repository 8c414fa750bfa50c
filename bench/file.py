#!/usr/bin/env python3
"""`rtb file` vs the reference script vs bash noclobber, per create and per
"already exists", plus the durable floor.

Each create goes to a distinct path (1,000 of them for rtb and bash; fewer
for the slow reference). The durable floor is the same work rtb does, done
in this Python process in a loop, with no process start: open an O_TMPFILE
in the directory, write, fsync, link it in via /proc/self/fd/N, fsync the
directory. rtb's target: within 1.5x of (floor + one process start), where a
process start is the median of running /bin/true.

Usage: cargo build --release && python3 bench/file.py [N]
"""
import os
import shutil
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import RTB, fmt_ms, measure, reference_python, table  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
N_REF = min(N, 100)
CONTENT = "Hello World"


def durable_floor(d, n):
    """Median seconds per in-process O_TMPFILE write+fsync+link+dir fsync."""
    dirfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
    data = CONTENT.encode()
    times = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            fd = os.open(d, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o666)
            os.write(fd, data)
            os.fsync(fd)
            # dst_dir_fd makes CPython call linkat(..., AT_SYMLINK_FOLLOW).
            os.link(f"/proc/self/fd/{fd}", f"floor-{i}", dst_dir_fd=dirfd, follow_symlinks=True)
            os.fsync(dirfd)
            os.close(fd)
            times.append(time.perf_counter() - t0)
    finally:
        os.close(dirfd)
    return statistics.median(times)


def main():
    if not os.path.exists(RTB):
        sys.exit(f"{RTB} not found: run `cargo build --release` first")
    ref_py, ref_note = reference_python()
    root = tempfile.mkdtemp(prefix="rtb-bench-file-")
    notes = []
    try:
        tools = [
            ("rtb file", N, lambda p: [RTB, "file", p]),
            (
                "bash noclobber",
                N,
                lambda p: ["bash", "-c", f'set -o noclobber; printf %s "{CONTENT}" > "$1"', "_", p],
            ),
        ]
        if ref_py:
            from benchlib import REFERENCE

            tools.insert(1, ("reference (python)", N_REF, lambda p: [ref_py, REFERENCE, "file", p]))
        else:
            notes.append(ref_note)

        rows = []
        results = {}
        for name, runs, argv in tools:
            d = os.path.join(root, name.split()[0])
            os.makedirs(d)
            created = measure(lambda i: argv(os.path.join(d, f"new-{i}")), runs=runs)
            existing = os.path.join(d, "existing")
            with open(existing, "w") as f:
                f.write(CONTENT)
            exists = measure(lambda i: argv(existing), runs=runs)
            results[name] = (created, exists)
            rows.append(
                [
                    name,
                    fmt_ms(created.median_s),
                    fmt_ms(exists.median_s),
                    f"{runs} + {runs}",
                ]
            )
        start = measure(["/bin/true"], runs=N)
        floor_dir = os.path.join(root, "floor")
        os.makedirs(floor_dir)
        floor = durable_floor(floor_dir, N)
        rows.append(["process start (/bin/true)", fmt_ms(start.median_s), "", f"{N}"])
        rows.append(["durable floor (in-process, no start)", fmt_ms(floor), "", f"{N}"])
        table(
            f"rtb file: median time per run ({N} distinct paths; reference {N_REF})",
            ["tool", "create", "already exists", "runs"],
            rows,
            note="Only rtb fsyncs the file and its directory; the reference and bash do neither. "
            + " ".join(notes),
        )
        rtb_create = results["rtb file"][0].median_s
        budget = floor + start.median_s
        table(
            "rtb file against its target (1.5x of durable floor + one process start)",
            ["floor + start", "1.5x target", "rtb create", "rtb / (floor + start)", "met"],
            [
                [
                    fmt_ms(budget),
                    fmt_ms(1.5 * budget),
                    fmt_ms(rtb_create),
                    f"{rtb_create / budget:.2f}x",
                    "yes" if rtb_create <= 1.5 * budget else "no",
                ]
            ],
            note="Durable floor: the same O_TMPFILE write, fsync, linkat via /proc/self/fd and "
            "directory fsync done in this Python process in a loop, timed per iteration "
            "(median). Process start: median wall time of /bin/true.",
        )
        from benchlib import summary

        for other in ["reference (python)", "bash noclobber"]:
            if other in results:
                summary("file", "create, median per run", fmt_ms(rtb_create), other,
                        fmt_ms(results[other][0].median_s), "(fsyncs; others do not)", True)
                summary("file", "already exists, median per run", fmt_ms(results["rtb file"][1].median_s),
                        other, fmt_ms(results[other][1].median_s), "(none)", True)
        summary("file", "create vs durable floor + 1 start", fmt_ms(rtb_create), "floor + start",
                fmt_ms(budget), "<= 1.5x", rtb_create <= 1.5 * budget)
        bad = [n for n, (c, e) in results.items() if n != "bash noclobber" and any(x != 0 for x in c.codes + e.codes)]
        if bad:
            print(f"\nWARNING: non-zero exit codes from {bad}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
