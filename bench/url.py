#!/usr/bin/env python3
"""URL-mode benchmark: rtb timeout vs the reference script vs curl.

Starts its own loopback server (127.0.0.1, an ephemeral port), then prints:
1. per-invocation cost of one GET (median wall time, peak RSS);
2. deadline overshoot against a server that never answers in time (delay)
   and one that drips a byte every 0.5 s (drip), with a 5 s deadline each
   (the reference's timeout is fixed at 5 s).

Usage: bench/url.py [--runs N]   (build first: cargo build --release)
"""
import argparse
import http.server
import os
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as b  # noqa: E402

DEADLINE = 5.0


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_GET(self):
        if self.path == "/ok":
            body = b"hello\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path == "/delay":
            time.sleep(DEADLINE + 5)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/drip":
            n = 20  # one byte every 0.5 s: 10 s in all
            self.send_response(200)
            self.send_header("Content-Length", str(n))
            self.end_headers()
            for _ in range(n):
                try:
                    self.wfile.write(b"x")
                    self.wfile.flush()
                except OSError:
                    return
                time.sleep(0.5)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--overshoot-runs", type=int, default=3)
    args = ap.parse_args()

    srv = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{srv.server_address[1]}"
    py, note = b.reference_python()

    tools = [("rtb", lambda u, t: [b.RTB, "-q", "timeout", "--timeout", str(t), u])]
    if py:
        tools.append(("reference", lambda u, t: [py, b.REFERENCE, "timeout", u]))
    tools.append(("curl", lambda u, t: ["curl", "-sf", "--max-time", str(t), "-o", "/dev/null", u]))

    rows = []
    stats = {}
    for name, argv in tools:
        runs = args.runs if name != "reference" else max(5, args.runs // 3)
        s = b.measure(argv(base + "/ok", DEADLINE), runs=runs)
        stats[name] = s
        rows.append([name, runs, f"{s.median_ms:.1f} ms", b.fmt_mib(s.max_rss_kib)])
    for r in rows:
        r.append(b.ratio(stats[r[0]].median_s, stats["rtb"].median_s))
    r, ref, curl = stats["rtb"], stats.get("reference"), stats["curl"]
    if ref:
        b.summary("timeout URL", "loopback GET, median wall", f"{r.median_ms:.1f} ms", "reference",
                  f"{ref.median_ms:.1f} ms ({ref.median_s / r.median_s:.0f}x slower)", ">= 30x faster",
                  ref.median_s / r.median_s >= 30)
    b.summary("timeout URL", "loopback GET, median wall", f"{r.median_ms:.1f} ms", "curl -sf",
              f"{curl.median_ms:.1f} ms", "<= 1.5x curl", r.median_s <= 1.5 * curl.median_s)
    b.summary("timeout URL", "loopback GET, peak RSS", b.fmt_mib(r.max_rss_kib), "curl -sf",
              b.fmt_mib(curl.max_rss_kib), "(none)", True)
    b.table(
        "One loopback GET per invocation",
        ["tool", "runs", "median wall", "peak RSS", "time vs rtb"],
        rows,
        note,
    )

    rows = []
    overs = {}
    for endpoint in ["delay", "drip"]:
        for name, argv in tools:
            s = b.measure(argv(f"{base}/{endpoint}", int(DEADLINE)), runs=args.overshoot_runs, warmup=0)
            over = s.median_s - DEADLINE
            verdict = "exit %s" % sorted(set(s.codes))
            rows.append([endpoint, name, f"{s.median_s:.3f} s", f"{over * 1000:+.0f} ms", verdict])
            overs[(endpoint, name)] = over
    b.table(
        f"Deadline overshoot ({DEADLINE:.0f} s deadline; delay = no answer for 10 s, drip = 1 byte / 0.5 s for 10 s)",
        ["endpoint", "tool", "median elapsed", "overshoot", "exit codes"],
        rows,
    )
    for endpoint in ["delay", "drip"]:
        mine = overs[(endpoint, "rtb")]
        for other in ["reference", "curl"]:
            if (endpoint, other) in overs:
                b.summary("timeout URL", f"deadline overshoot ({endpoint})", f"{mine * 1000:+.0f} ms", other,
                          f"{overs[(endpoint, other)] * 1000:+.0f} ms", "<= 50 ms", mine <= 0.05)
    srv.shutdown()


if __name__ == "__main__":
    main()
