#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Turns kcmperf's KCMPERF lines (tools/bench.sh) into a Markdown report of
medians over rounds, with ratios kcm_rs / kcm and kcm_rs / user space, and a
gnuplot chart. Measurements over MPTCP and kernel TLS (kcmperf -T, provider
field rs+mptcp, user+tls, ...) get columns of their own.

  report.py --tsv results.tsv --md results.md [--png results.png]
            [--meta key=value]...
"""
import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict

FIELDS = ["tag", "provider", "round", "mode", "method", "size", "threads", "conns", "status",
          "rate", "mbps", "msgs", "secs", "cpus", "detail"]
PROVIDERS = [("rs", "kcm_rs"), ("c", "kcm (C)"), ("user", "user space")]
# Transports besides TCP (kcmperf -T), measured with kcm_rs and user space
# only; their results have the provider field PROVIDER+TRANSPORT.
TRANSPORTS = [("mptcp", "MPTCP"), ("tls", "kTLS")]
STATUS_TEXT = {"misframed": "mis-framed", "stall": "stalled", "lost": "lost messages",
               "error": "error"}


def parse(path):
    rows, bad = [], 0
    with open(path, errors="replace") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != len(FIELDS) or parts[0] != "KCMPERF":
                bad += 1    # a line cut by a kernel message on the console
                continue
            r = dict(zip(FIELDS, parts))
            try:
                for k in ("round", "size", "threads", "conns", "msgs"):
                    r[k] = int(r[k])
                for k in ("rate", "mbps", "secs", "cpus"):
                    r[k] = float(r[k])
            except ValueError:
                bad += 1
                continue
            rows.append(r)
    return rows, bad


class Cell:
    """The rounds of one measurement of one provider."""

    def __init__(self, rows):
        self.rows = rows
        self.ok = [r for r in rows if r["status"] == "ok"]
        self.valid = bool(rows) and len(self.ok) == len(rows)
        if self.valid:
            self.rate = statistics.median(r["rate"] for r in self.ok)
            self.mbps = statistics.median(r["mbps"] for r in self.ok)
            # Busy CPU time (all CPUs) per message, in microseconds.
            self.cpu_us = statistics.median(r["cpus"] / r["rate"] * 1e6 if r["rate"] else 0
                                            for r in self.ok)

    def failure(self):
        if not self.rows:
            return "not run"
        bad = [r["status"] for r in self.rows if r["status"] != "ok"]
        what = STATUS_TEXT.get(bad[0], bad[0])
        if len(bad) < len(self.rows):
            what += f" in {len(bad)}/{len(self.rows)} rounds"
        return f"n/a ({what})"


def size_text(n):
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KiB"
    return f"{n} B"


def num(x):
    if x >= 100:
        return f"{x:,.0f}"
    if x >= 10:
        return f"{x:.1f}"
    return f"{x:.2f}"


def ratio(a, b):
    if a.valid and b.valid and b.rate > 0:
        return f"{a.rate / b.rate:.2f}"
    return "n/a"


def cpu_text(cells):
    return " / ".join((f"{c.cpu_us:.1f}" if c.cpu_us >= 10 else f"{c.cpu_us:.2f}")
                      if c.valid else "-" for c in cells)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--md", required=True)
    ap.add_argument("--png")
    ap.add_argument("--meta", action="append", default=[])
    args = ap.parse_args()
    meta = dict(m.split("=", 1) for m in args.meta)
    rows, bad = parse(args.tsv)

    groups = defaultdict(list)
    for r in rows:
        groups[(r["provider"], r["mode"], r["method"], r["size"], r["threads"])].append(r)

    def cell(provider, mode, method, size, threads):
        return Cell(groups.get((provider, mode, method, size, threads), []))

    def keys(mode):
        return sorted({(k[2], k[3], k[4]) for k in groups if k[1] == mode},
                      key=lambda k: (k[1], k[2], k[0]))

    def cells(mode, method, size, threads, transports):
        """kcm_rs, kcm (C), user space over TCP, then kcm_rs and user space over each transport."""
        user = ("rr", "user") if mode == "rr" else ("stream", "read/write")
        cs = [cell("rs", mode, method, size, threads), cell("c", mode, method, size, threads),
              cell("user", *user, size, threads)]
        for t, _ in transports:
            cs += [cell(f"rs+{t}", mode, method, size, threads),
                   cell(f"user+{t}", *user, size, threads)]
        return cs

    rounds = sorted({r["round"] for r in rows})
    rr_conns = sorted({r["conns"] for r in rows
                       if r["mode"] == "rr" and r["provider"].split("+")[0] != "user"})
    transports = [(t, label) for t, label in TRANSPORTS
                  if any(r["provider"].endswith("+" + t) for r in rows)]
    # The columns of the transports: kcm_rs, user space and their ratio each.
    tr_head = "".join(f" kcm_rs {label} | user {label} | kcm_rs / user {label} |"
                      for _, label in transports)
    tr_align = "---:|---:|---:|" * len(transports)

    def tr_cols(cs, text):
        return "".join(f" {text(a)} | {text(b)} | {ratio(a, b)} |"
                       for a, b in zip(cs[3::2], cs[4::2]))
    out = []
    w = out.append
    w("# kcm-rs benchmark: kcm_rs.ko, the in-tree kcm.ko, and user-space framing")
    w("")
    w("Generated by `make bench` (tools/bench.sh, tools/kcmperf/). Do not edit by hand.")
    w("")
    w("| | |")
    w("|---|---|")
    for key, label in [("date", "date"), ("host_cpu", "host CPU"), ("qemu", "virtual machine"),
                       ("kernel", "guest kernel"), ("commit", "kcm-rs commit"),
                       ("settings", "settings"), ("guest_seconds", "guest run time (s)"),
                       ("total_seconds", "make bench time (s)")]:
        if meta.get(key):
            w(f"| {label} | {meta[key]} |")
    w(f"| rounds found | {len(rounds)} ({len(rows)} measurements) |")
    w("")
    cpus = meta.get("guest_cpus") or "the guest's"
    w("Each number is the median over the rounds. Under QEMU/TCG every instruction is "
      "emulated, so the absolute numbers are far below real hardware; the ratios are the point. "
      f"The guest's CPU(s) ({cpus}) run everything: the measured threads, their peers and "
      "the kernel's work. "
      "\"n/a (mis-framed)\": a message of the wrong length or content arrived; "
      "\"n/a (stalled)\": no progress for the stall time (3 s): no message arrived, or a send "
      "blocked that long; \"n/a (lost messages)\": a request/response reply did not come. "
      "(net/kcm runs its parser at the start of a TCP segment, not of the message: it "
      "mis-frames messages that do not start a segment, or reads a bogus length and waits for "
      "bytes that never come.) A measurement is n/a when any round failed. "
      "CPU µs/msg: busy time of all the guest's CPUs in the counted window (from /proc/stat) "
      "per message, kcm_rs / kcm (C) / user space.")
    w("")
    if transports:
        w(f"{', '.join(label for _, label in transports)}: the same measurements, with kcm_rs "
          "and user space only, over other connections: "
          + "; ".join({"mptcp": "MPTCP, Multipath TCP sockets (IPPROTO_MPTCP; one subflow "
                                "over loopback)",
                       "tls": "kTLS, TCP sockets with kernel TLS (TLS 1.3, AES-GCM-128) in "
                              "both directions, set up on both ends before a socket is "
                              "attached or used; user space reads and writes plaintext "
                              "through them"}[t] for t, _ in transports)
          + ". The in-tree kcm.ko takes neither (it refuses MPTCP sockets and parses the "
          "ciphertext of kTLS ones). The CPU column is of the TCP measurements.")
        w("")

    # Request/response.
    rr = keys("rr")
    if rr:
        conns = ", ".join(str(c) for c in rr_conns) or "?"
        w("## Request/response (transactions/s)")
        w("")
        w(f"KCM: T threads, each on a clone of one multiplexor over {conns} TCP connection(s) "
          "to an echo peer (user-space threads that deframe and echo), send a request and wait "
          "for a reply. User space: T threads, each with its own TCP connection to the same "
          "echo peer.")
        w("")
        w("| size | threads | kcm_rs | kcm (C) | user space | kcm_rs / C | kcm_rs / user | "
          f"CPU µs/msg |{tr_head}")
        w(f"|---:|---:|---:|---:|---:|---:|---:|---:|{tr_align}")

        def rate(c):
            return num(c.rate) if c.valid else c.failure()

        for _, size, threads in sorted({(None, k[1], k[2]) for k in rr}):
            cs = cells("rr", "kcm", size, threads, transports)
            vals = [rate(c) for c in cs[:3]]
            w(f"| {size_text(size)} | {threads} | {' | '.join(vals)} | {ratio(cs[0], cs[1])} | "
              f"{ratio(cs[0], cs[2])} | {cpu_text(cs[:3])} |{tr_cols(cs, rate)}")
        w("")

    # Streams.
    for mode, title, what in [
            ("stream-recv", "Stream receive",
             "A peer writes messages back to back over one TCP connection as fast as it can "
             "(whole frames, 256 KiB per write). KCM: one thread receives whole messages, one per "
             "recv() or a batch of up to 32 per recvmmsg(). User space: a reader that reads into "
             "one large buffer and deframes in place (no per-message system call)."),
            ("stream-send", "Stream send",
             "KCM: one thread sends messages over one attached TCP connection, one per send() or "
             "32 per sendmmsg(); a user-space peer reads, deframes and checks them. User space: "
             "a writer of whole frames, 256 KiB per write, to the same reader.")]:
        ks = keys(mode)
        if not ks:
            continue
        w(f"## {title} (messages/s, MB/s of payload in parentheses)")
        w("")
        w(what)
        w("")
        w("| size | call | kcm_rs | kcm (C) | user space | kcm_rs / C | kcm_rs / user | "
          f"CPU µs/msg |{tr_head}")
        w(f"|---:|---|---:|---:|---:|---:|---:|---:|{tr_align}")

        def rate_mbps(c):
            return f"{num(c.rate)} ({num(c.mbps)})" if c.valid else c.failure()

        for method, size, _ in ks:
            cs = cells(mode, method, size, 1, transports)
            vals = [rate_mbps(c) for c in cs[:3]]
            w(f"| {size_text(size)} | {method} | {' | '.join(vals)} | {ratio(cs[0], cs[1])} | "
              f"{ratio(cs[0], cs[2])} | {cpu_text(cs[:3])} |{tr_cols(cs, rate_mbps)}")
        w("")

    failures = defaultdict(list)
    for r in rows:
        if r["status"] != "ok":
            failures[(r["provider"], r["mode"], r["method"], r["size"], r["threads"],
                      r["status"])].append(r)
    if failures:
        w("## Failed measurements")
        w("")
        w("| provider | mode | call | size | threads | status | rounds | detail (first) |")
        w("|---|---|---|---:|---:|---|---|---|")
        for (prov, mode, method, size, threads, st), rs in failures.items():
            w(f"| {prov} | {mode} | {method} | {size_text(size)} | {threads} | {st} | "
              f"{','.join(str(r['round']) for r in rs)} | {rs[0]['detail']} |")
        w("")
    if bad:
        w(f"({bad} unreadable result line(s) skipped.)")
        w("")
    if args.png:
        w(f"![chart]({os.path.basename(args.png)})")
        w("")
    with open(args.md, "w") as f:
        f.write("\n".join(out))

    if args.png:
        chart(args.png, meta, keys, cells, transports)


def chart(png, meta, keys, cells, transports):
    if not shutil.which("gnuplot"):
        print("report: no gnuplot, no chart", file=sys.stderr)
        return
    panels = []
    with tempfile.TemporaryDirectory() as tmp:
        def data(name, lines):
            path = os.path.join(tmp, name)
            with open(path, "w") as f:
                for label, cs, attr in lines:
                    vals = [f"{getattr(c, attr):.3f}" if c.valid else "NaN" for c in cs]
                    f.write(f'"{label}" {" ".join(vals)}\n')
            return path

        rr = keys("rr")
        if rr:
            lines = []
            for _, size, threads in sorted({(None, k[1], k[2]) for k in rr}):
                lines.append((f"{size_text(size)} T={threads}",
                              cells("rr", "kcm", size, threads, transports), "rate"))
            panels.append(("request/response: transactions/s", data("rr.dat", lines), False,
                           len(lines)))
        for mode, title in [("stream-recv", "stream receive: MB/s (log scale)"),
                            ("stream-send", "stream send: MB/s (log scale)")]:
            ks = keys(mode)
            if not ks:
                continue
            lines = []
            for method, size, _ in ks:
                lines.append((f"{size_text(size)} {method}",
                              cells(mode, method, size, 1, transports), "mbps"))
            panels.append((title, data(mode + ".dat", lines), True, len(lines)))
        if not panels:
            return
        height = 330 * len(panels) + 60
        # Hue: provider; over MPTCP lighter, over kTLS darker.
        bars = [("kcm\\_rs", "#d95f02"), ("kcm (C)", "#7570b3"), ("user space", "#1b9e77")]
        shades = {"mptcp": ("#fdae6b", "#99d8c9"), "tls": ("#8c2d04", "#00441b")}
        for t, label in transports:
            bars += [(f"kcm\\_rs {label}", shades[t][0]), (f"user {label}", shades[t][1])]

        def plot(path):
            return "plot " + ", ".join(
                (f"'{path}' using 2:xtic(1)" if i == 0 else f"'' using {i + 2}")
                + f" title '{name}' lc rgb '{color}'" for i, (name, color) in enumerate(bars))

        script = [
            f"set terminal pngcairo size 1100,{height} font 'sans,10'",
            f"set output '{png}'",
            "set style data histograms",
            "set style histogram clustered gap 1",
            "set style fill solid 0.85 border -1",
            "set boxwidth 0.9",
            "set grid ytics",
            "set key outside top center horizontal",
            "set xtics rotate by -20 left",
            "set datafile missing 'NaN'",
            f"set multiplot layout {len(panels)},1 title "
            f"'kcm-rs benchmark, {meta.get('date', '')}: QEMU/TCG, "
            f"{meta.get('guest_cpus', '?')} guest CPU(s), "
            f"medians (a missing bar: n/a)'",
        ]
        for title, path, log, n in panels:
            script += [f"set title '{title}'",
                       f"set xrange [-0.6:{n - 0.4}]",
                       "set logscale y" if log else "unset logscale y",
                       "set yrange [0.1:*]" if log else "set yrange [0:*]",
                       plot(path)]
        script.append("unset multiplot")
        res = subprocess.run(["gnuplot"], input="\n".join(script) + "\n", text=True,
                             capture_output=True)
        if res.returncode != 0:
            print("report: gnuplot failed:\n" + res.stderr, file=sys.stderr)


if __name__ == "__main__":
    main()
