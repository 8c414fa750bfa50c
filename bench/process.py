#!/usr/bin/env python3
"""Command mode against GNU timeout, side by side (stdlib + benchlib).

1. Overhead: `rtb timeout --timeout 10 -- true` vs `timeout 10 true`
   (median wall time, and peak RSS of the supervisor itself; target: rtb
   within 1.5x of GNU timeout).
2. Overshoot: `rtb timeout --timeout 1 -- sleep 10` vs `timeout 1 sleep 10`
   (median of elapsed minus 1 s; target: at most 50 ms).

Peak RSS comes from GNU time (`/usr/bin/time -f %M`), not from benchlib's
os.wait4: a process started from Python (vfork/exec) inherits Python's own
peak RSS (about 15 MiB) into ru_maxrss, which hides a small supervisor's.
GNU time forks from a ~2 MiB process, so its floor is far lower.

Build first: cargo build --release. RUNS=N changes the run count.
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import RTB, fmt_mib, fmt_ms, ratio, run_once, summary, table  # noqa: E402

RUNS = int(os.environ.get("RUNS", "30"))
OVERSHOOT_RUNS = int(os.environ.get("OVERSHOOT_RUNS", "9"))


def peak_rss_kib(argv, env, runs=5):
    """Median of GNU time's %M (KiB) for argv; None without /usr/bin/time."""
    if not os.path.exists("/usr/bin/time"):
        return None
    got = []
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "rss")
        for _ in range(runs):
            subprocess.run(["/usr/bin/time", "-f", "%M", "-o", out] + argv, env=env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            with open(out) as f:
                got.append(int(f.read().strip().splitlines()[-1]))
    return int(statistics.median(got))


def interleaved(argvs, runs, warmup=2, env=None):
    """Median wall (s) per argv, runs alternating between them so that load
    from other work on the machine hits every column alike."""
    for _ in range(warmup):
        for argv in argvs:
            run_once(argv, env=env)
    walls = [[] for _ in argvs]
    codes = [set() for _ in argvs]
    for _ in range(runs):
        for i, argv in enumerate(argvs):
            w, _, c = run_once(argv, env=env)
            walls[i].append(w)
            codes[i].add(c)
    return [statistics.median(w) for w in walls], codes


def main():
    if not os.path.exists(RTB):
        sys.exit(f"{RTB} not found: run `cargo build --release` first")
    gnu = shutil.which("timeout")
    if gnu is None:
        sys.exit("GNU timeout not found")

    env = {k: v for k, v in os.environ.items() if not k.startswith("RTB_")}
    rtb_argv = [RTB, "timeout", "--timeout", "10", "--", "true"]
    gnu_argv = [gnu, "10", "true"]
    (rtb_wall, gnu_wall), codes = interleaved([rtb_argv, gnu_argv], RUNS, env=env)
    assert codes == [{0}, {0}], codes
    rtb_rss = peak_rss_kib(rtb_argv, env)
    gnu_rss = peak_rss_kib(gnu_argv, env)
    table(
        "Command overhead: `-- true` under a 10 s deadline",
        ["", "rtb timeout --timeout 10 -- true", "timeout 10 true", "rtb / GNU"],
        [
            ["median wall", fmt_ms(rtb_wall), fmt_ms(gnu_wall), ratio(rtb_wall, gnu_wall)],
            ["peak RSS (GNU time %M)", fmt_mib(rtb_rss), fmt_mib(gnu_rss), ratio(rtb_rss, gnu_rss)],
        ],
        note=f"{RUNS} runs each, interleaved; target: rtb within 1.5x of GNU timeout.",
    )

    summary("timeout CMD", "`-- true` overhead, median wall", fmt_ms(rtb_wall), "GNU timeout",
            fmt_ms(gnu_wall), "<= 1.5x GNU timeout", rtb_wall <= 1.5 * gnu_wall)
    summary("timeout CMD", "`-- true` peak RSS", fmt_mib(rtb_rss), "GNU timeout", fmt_mib(gnu_rss),
            "(none)", True)

    rtb_argv = [RTB, "timeout", "--timeout", "1", "--", "sleep", "10"]
    gnu_argv = [gnu, "1", "sleep", "10"]
    (rtb_s, gnu_s), codes = interleaved([rtb_argv, gnu_argv], OVERSHOOT_RUNS, warmup=0, env=env)
    assert codes == [{124}, {124}], codes
    table(
        "Deadline overshoot: `sleep 10` under a 1 s deadline (elapsed minus 1 s)",
        ["", "rtb timeout --timeout 1 -- sleep 10", "timeout 1 sleep 10"],
        [
            ["median overshoot", fmt_ms(rtb_s - 1.0), fmt_ms(gnu_s - 1.0)],
        ],
        note=f"{OVERSHOOT_RUNS} runs each, interleaved, exit 124 every time; target: at most 50 ms.",
    )
    summary("timeout CMD", "deadline overshoot (`sleep 10`, 1 s)", fmt_ms(rtb_s - 1.0), "GNU timeout",
            fmt_ms(gnu_s - 1.0), "<= 50 ms", rtb_s - 1.0 <= 0.05)


if __name__ == "__main__":
    main()
