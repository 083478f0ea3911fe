"""Render bench/last-run.json into docs/benchmarks.md and docs/img/bench-*.png.

Theory of operation: pure formatting, no measuring. The page leads with real
traffic (r), browser-like request heads: flashplug beside the faster of nginx
and lighttpd from the same invocation. Each workload's table puts every
figure beside its ratio to the baseline measured in the same invocation (for
(r) that faster one; else nginx; lighttpd for CGI, which nginx does not do).
The targets of issues 12 and 6 are checked against those same ratios. Two
plots follow the Flash paper's figures: throughput against file size, and
throughput as more of the data set is kept out of the page cache.

Usage (re-render without re-measuring): python bench/report.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
MIB = 2**20

# The servers flashplug is held against in (r): the faster of the two counts.
BEST_OF = ("nginx", "lighttpd")

# (text, workload, server, baseline server(s) or None, figure, bound, "min"|"max"|"each"),
# "each": the lowest of the round-by-round ratios;
# a tuple of baselines means the best of them.
TARGETS = [
    ("browser-like heads, 1 KiB: >= 1.0x the best", "r-browser", "flashplug-amped", BEST_OF, "rps", 1.0, "min"),
    ("1,000 clients, 1 KiB: >= 1.0x the best", "r-clients", "flashplug-amped", BEST_OF, "rps", 1.0, "min"),
    ("revalidation: >= 1.0x the best", "r-reval", "flashplug-amped", BEST_OF, "rps", 1.0, "min"),
    ("Zipf over 10,000 files, browser heads: >= 1.0x the best", "r-zipf", "flashplug-amped", BEST_OF,
     "rps", 1.0, "min"),
    ("repeated head, 1 KiB: >= 1.0x lighttpd", "a-1k", "flashplug-amped", "lighttpd", "rps", 1.0, "min"),
    ("1 KiB cached: >= 1.0x nginx req/s", "a-1k", "flashplug-amped", "nginx", "rps", 1.0, "min"),
    ("100 KiB: >= 1.0x lighttpd req/s", "a-100k", "flashplug-amped", "lighttpd", "rps", 1.0, "min"),
    ("1 MiB: >= 1.0x lighttpd req/s", "a-1m", "flashplug-amped", "lighttpd", "rps", 1.0, "min"),
    ("1 MiB, 64 connections: >= 1.0x lighttpd in every round", "a-1m", "flashplug-amped", "lighttpd", "rps", 1.0,
     "each"),
    ("1 MiB, 16 connections: >= 1.0x lighttpd in every round", "a-1m-16", "flashplug-amped", "lighttpd", "rps", 1.0,
     "each"),
    ("disk-bound: amped >= 2x sped", "c-evict-100", "flashplug-amped", "flashplug-sped", "rps", 2.0, "min"),
    ("disk-bound: amped >= 1.0x nginx aio threads", "c-evict-100", "flashplug-amped", "nginx-aio", "rps", 1.0, "min"),
    ("idle connections: <= 2 KiB RSS each", "d-idle", "flashplug-amped", None, "rss_per_conn", 2048, "max"),
    ("1 KiB: >= 25x aiohttp static req/s", "a-1k", "flashplug-amped", "aiohttp", "rps", 25.0, "min"),
    ("HTTPS 1 KiB, keep-alive: >= 1.0x nginx req/s", "h-1k", "flashplug-amped", "nginx", "rps", 1.0, "min"),
    ("HTTPS new connections (TLS session resumed by wrk): >= 0.9x nginx req/s", "h-new-conn", "flashplug-amped", "nginx",
     "rps", 0.9, "min"),
    ("HTTPS 1 MiB: >= 1.0x nginx req/s", "h-1m", "flashplug-amped", "nginx", "rps", 1.0, "min"),
]


ORDER = ["r-browser", "r-clients", "r-reval", "r-zipf", "a-1k", "a-100k", "a-1m", "a-1m-16", "b-zipf",
         "c-evict-100", "c-evict-0", "c-evict-50", "c-evict-90", "d-idle", "e-cgi-sh", "e-cgi-py",
         "h-1k", "h-new-conn", "h-1m", "m-1k", "m-browser", "m-zipf"]


def ordered(wls: dict) -> list:
    return sorted(wls.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else len(ORDER), kv[0]))


SERVERS = ["nginx", "nginx-aio", "lighttpd", "http.server", "aiohttp", "flashplug-before", "flashplug-amped", "flashplug-sped",
           "flashplug-mt", "flashplug-mp", "lighttpd-cgi", "flashplug-cgi"]


def servers_of(rows: dict) -> list[str]:
    """Row names in a fixed order: the references first, then flashplug's."""
    return sorted(rows, key=lambda n: (SERVERS.index(n) if n in SERVERS else len(SERVERS), n))


def ok(row: dict | None) -> bool:
    return bool(row) and "failed" not in row and "error" not in row


def best(rows: dict, names) -> str | None:
    """Of names, the server whose run worked with the most req/s."""
    good = [n for n in names if ok(rows.get(n))]
    return max(good, key=lambda n: rows[n]["rps"]) if good else None


def baseline(wl: dict) -> str | None:
    if wl["group"] == "r":
        return best(wl["rows"], BEST_OF)
    for name in ("nginx", "lighttpd-cgi", "lighttpd"):
        if ok(wl["rows"].get(name)):
            return name
    return None


def answers(row: dict) -> str:
    """A run's responses by status code, as shares: "200 25%, 304 75%"."""
    codes = row.get("codes") or {}
    total = sum(codes.values())
    return ", ".join(f"{k} {100 * v / total:.0f}%" for k, v in sorted(codes.items())) if total else "—"


def repeated(row: dict | None) -> str:
    """The share of request heads wrk sent that it had sent before, byte for byte."""
    if not row or not row.get("sent"):
        return "—"
    return f"{100 * row['repeats'] / row['sent']:.1f}%"


def shortcut(row: dict | None) -> str:
    """The share of flashplug's requests answered without a parse: from a
    head remembered byte for byte, plus from a remembered shape."""
    if not row or "heads_known_share" not in row:
        return "—"
    known, shaped = row["heads_known_share"], row["heads_shaped_share"]
    return f"{100 * (known + shaped):.1f}% ({100 * known:.1f} + {100 * shaped:.1f})"


def cpu_per_request(row: dict) -> str:
    """The server tree's CPU time per request, in µs: steadier than req/s
    when something else shares the machine."""
    if not row.get("server_cpu") or not row.get("rps"):
        return "—"
    return f"{1e6 * row['server_cpu'] / row['rps']:.1f}"


def _ratio(value, base) -> str:
    if value is None or not base:
        return ""
    return f" ({value / base:.2f}x)"


def _cell(row: dict, base: dict | None, key: str, fmt: str, scale: float = 1.0) -> str:
    v = row.get(key)
    if v is None:
        return "—"
    b = base.get(key) if base else None
    return fmt.format(v / scale) + _ratio(v, b)


def one_line(name: str, row: dict) -> str:
    if "rps" not in row:
        return f"{name}: {row.get('failed') or row.get('error')}"
    s = f"{name}: {row['rps']:,.0f} req/s, {row['mbps']:,.1f} MB/s, p99 {row['p99_ms']:.2f} ms, peak {row['peak_rss'] / MIB:.1f} MiB"
    if row.get("rss_per_conn") is not None:
        s += f", {row['held']} idle held, {row['rss_per_conn'] / 1024:.2f} KiB/conn"
    if row.get("codes"):
        s += f", answers {answers(row)}, heads sent before {repeated(row)}"
    if "heads_known_share" in row:
        s += f", answered without a parse {shortcut(row)}"
    s += f", errors {row['errors']}" if row.get("errors") else ""
    return s + (f"; ERROR: {row['error']}" if row.get("error") else "")


def _notes(row: dict) -> str:
    notes = []
    if row.get("errors"):
        notes.append("errors " + ", ".join(f"{k} {v}" for k, v in row["errors"].items()))
    if "evicted_resident_before" in row:
        notes.append(f"{100 * row['evicted_resident_before']:.0f}% of evicted set resident at start")
    if "evict_sweep_ms" in row:
        notes.append(f"sweep {row['evict_sweep_ms']:.0f} ms")
    if any(b > BUSY for b in row.get("busy_before") or ()):
        notes.append("machine busy before the run: " +
                     ", ".join(f"CPU {c} {100 * b:.0f}%" for c, b in zip((0, 1), row["busy_before"])))
    if row.get("client_core_busy", 0) >= CLIENT_BOUND:
        notes.append(f"wrk's core {100 * row['client_core_busy']:.0f}% busy: the client set the pace")
    if row.get("other_on_core", 0) > BUSY:
        notes.append(f"other tasks took {100 * row['other_on_core']:.0f}% of the server's core during the run")
    if len(row.get("rounds_rps") or ()) > 1:
        spread = sorted(row["rounds_rps"])
        notes.append(f"median of {len(spread)} rounds ({spread[0]:,.0f} to {spread[-1]:,.0f} req/s)")
    if row.get("note"):
        notes.append(row["note"])
    return "; ".join(notes)


BUSY = 0.10
# wrk's core this busy means the load generator, not the server, was the limit.
CLIENT_BOUND = 0.95


def busy(row: dict) -> bool:
    """Did another process use a benchmark CPU just before, or the server's core during, this run?"""
    return any(b > BUSY for b in row.get("busy_before") or ()) or row.get("other_on_core", 0) > BUSY


def table(wl: dict) -> list[str]:
    bname = baseline(wl)
    base = wl["rows"].get(bname) if bname else None
    idle, real = wl["group"] == "d", wl["group"] == "r"
    # (r), and (m)'s browser heads: each run's answers by status.
    counted = any("codes" in row for row in wl["rows"].values())
    head = ["server", "req/s", "MB/s", "p99 ms", "peak RSS MiB", "server CPU", "CPU µs/req"]
    if idle:
        head += ["idle held", "still open", "RSS/idle conn KiB"]
    if counted:
        head += ["answers"]
    lines = ["| " + " | ".join(head + ["notes"]) + " |", "|" + "---|" * (len(head) + 1)]
    for name in servers_of(wl["rows"]):
        row = wl["rows"][name]
        label = wl["labels"].get(name, name)
        if not ok(row):
            lines.append(f"| {label} |" + " — |" * (len(head) - 1) + f" {row.get('failed') or row.get('error')} |")
            continue
        cells = [_cell(row, base, "rps", "{:,.0f}"), _cell(row, base, "mbps", "{:,.1f}"),
                 _cell(row, base, "p99_ms", "{:.2f}"), _cell(row, base, "peak_rss", "{:.1f}", MIB),
                 f"{100 * row['server_cpu']:.0f}%" if "server_cpu" in row else "—", cpu_per_request(row)]
        if idle:
            cells += [f"{row['held']:,}", "—" if row.get("alive") is None else f"{row['alive']:,}",
                      _cell(row, base, "rss_per_conn", "{:.2f}", 1024)]
        if counted:
            cells.append(answers(row))
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {_notes(row)} |")
    if bname:
        label = wl["labels"].get(bname, bname)
        whom = f"the faster of {' and '.join(BEST_OF)} in the same run (here {label})" if real \
            else f"{label} in the same run"
        lines.append(f"\nRatios in parentheses are to {whom}.")
    if real:
        lines.append(f"\nRequest heads wrk had already sent earlier in flashplug-amped's run, byte for byte: "
                     f"{repeated(_counted(wl['rows']))} (flashplug's known-heads shortcut answers heads of a known "
                     "shape, which need not repeat: see Method).")
    flash = wl["rows"].get("flashplug-amped")
    if flash and "heads_known_share" in flash:
        lines.append(f"\nflashplug-amped's requests answered without a parse, from heads remembered byte "
                     f"for byte + by shape (its status counters over the measured run): {shortcut(flash)}.")
    before, after = wl["rows"].get("flashplug-before"), wl["rows"].get("flashplug-amped")
    if ok(before) and ok(after):
        fig = "rss_per_conn" if idle else "rps"
        lines.append(f"\nAfter/before (`--baseline`): {fig} {after[fig] / before[fig]:.2f}x.")
    return lines


def _counted(rows: dict) -> dict | None:
    # Every server of (r) gets the same sequence of heads, but the share of
    # repeats grows with the length of that sequence: flashplug's run counts.
    flash = rows.get("flashplug-amped") or {}
    return flash if flash.get("sent") else None


def targets(results: dict) -> list[str]:
    lines = ["| target | measured | met? |", "|---|---|---|"]
    wls = results["workloads"]
    for text, key, who, against, fig, bound, kind in TARGETS:
        rows = wls.get(key, {}).get("rows", {})
        of_best = isinstance(against, tuple)
        if of_best:
            against = best(rows, against) or against[0]
        row, base = rows.get(who), rows.get(against) if against else None
        if not ok(row) or (against and not ok(base)):
            missing = who if not ok(row) else against
            why = (row or base or {}).get("failed") if (row or base) else "not run"
            lines.append(f"| {text} | not measured ({missing}: {why or 'not run'}) | — |")
            continue
        if kind == "each":
            # Round by round: the rounds are interleaved, so round i of each
            # server ran at about the same time.
            pairs = list(zip(row.get("rounds_rps") or [row[fig]], base.get("rounds_rps") or [base[fig]]))
            ratios = [mine / theirs if theirs else 0.0 for mine, theirs in pairs]
            value = min(ratios)
            shown = "lowest round " + f"{value:.2f}x (rounds " + ", ".join(f"{r:.2f}x" for r in ratios) + ")"
        elif against:
            value = row[fig] / base[fig]
            shown = f"{value:.2f}x ({row[fig]:,.0f} vs {base[fig]:,.0f} req/s{', ' + against if of_best else ''})"
        else:
            value = row[fig]
            shown = f"{value / 1024:.2f} KiB"
        met = value <= bound if kind == "max" else value >= bound
        if busy(row) or (base and busy(base)):
            shown += " (busy machine: unreliable)"
        lines.append(f"| {text} | {shown} | {'yes' if met else 'no'} |")
    return lines


def _rps(row: dict | None) -> str:
    if ok(row):
        return f"{row['rps']:,.0f}"
    if row and "rps" in row:
        return "**wrong answers**"   # measured, but not the answers due: not throughput
    return "failed" if row else ""


def real_traffic(results: dict) -> list[str]:
    """The page's lead table: each workload of (r), flashplug against the
    faster of nginx and lighttpd in the same run."""
    wls = [(k, wl) for k, wl in ordered(results["workloads"]) if wl["group"] == "r"]
    if not wls:
        return ["Not measured in this run (`python bench/run.py --only real`)."]
    names = [n for n in ("nginx", "lighttpd", "flashplug-before", "flashplug-amped")
             if any(n in wl["rows"] for _, wl in wls)]
    lines = ["| workload | " + " | ".join(names) + " | flashplug / best | heads sent before "
             "| flashplug's answers without a parse (exact + shape) |",
             "|---|" + "---|" * (len(names) + 3)]
    for key, wl in wls:
        rows = wl["rows"]
        cells = [_rps(rows.get(n)) for n in names]
        top, flash = best(rows, BEST_OF), rows.get("flashplug-amped")
        ratio = f"**{flash['rps'] / rows[top]['rps']:.2f}x** ({top})" if top and ok(flash) else "—"
        lines.append(f"| {key} | " + " | ".join(cells) + f" | {ratio} | {repeated(_counted(rows))} "
                     f"| {shortcut(flash)} |")
    return lines


def summary(results: dict) -> list[str]:
    wls = results["workloads"]
    names = servers_of({n: None for wl in wls.values() for n in wl["rows"]})
    lines = ["| workload | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    for key, wl in ordered(wls):
        cells = []
        for n in names:
            r = wl["rows"].get(n)
            cells.append(f"{r['rps']:,.0f}" if ok(r) else ("failed" if r else ""))
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return lines


def _style(name: str) -> str:
    # flashplug solid, the servers it is measured against dashed.
    return "o-" if name.startswith("flashplug") else "s--"


def plots(results: dict, img: Path) -> list[str]:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img.mkdir(parents=True, exist_ok=True)
    wls = results["workloads"]
    made = []
    sizes = [("a-1k", 1), ("a-100k", 100), ("a-1m", 1024)]
    if any(k in wls for k, _ in sizes):
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
        names = servers_of({n: None for k, _ in sizes for n in wls.get(k, {}).get("rows", {})})
        for n in names:
            pts = [(kib, wls[k]["rows"][n]) for k, kib in sizes if ok(wls.get(k, {}).get("rows", {}).get(n))]
            if pts:
                ax1.plot([p[0] for p in pts], [p[1]["rps"] for p in pts], _style(n), label=n)
                ax2.plot([p[0] for p in pts], [p[1]["mbps"] for p in pts], _style(n), label=n)
        for ax, ylab in ((ax1, "requests/s"), (ax2, "MB/s")):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("file size (KiB)")
            ax.set_ylabel(ylab)
            ax.grid(True, which="both", alpha=0.3)
        ax2.legend(fontsize=8)
        fig.suptitle("Throughput against file size (one cached file, 64 connections, server on one core)")
        fig.tight_layout()
        fig.savefig(img / "bench-filesize.png", dpi=110)
        plt.close(fig)
        made.append("bench-filesize.png")
    curve = sorted(((wl["evict"], wl) for k, wl in wls.items() if k.startswith("c-evict-")), key=lambda c: c[0])
    if curve:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        names = servers_of({n: None for _, wl in curve for n in wl["rows"]})
        for n in names:
            pts = [(pct, wl["rows"][n]["mbps"]) for pct, wl in curve if ok(wl["rows"].get(n))]
            if pts:
                ax.plot([p[0] for p in pts], [p[1] for p in pts], _style(n),
                        label=curve[0][1]["labels"].get(n, n))
        ax.set_xlabel("share of the 1 GiB file set kept out of the page cache (%)")
        ax.set_ylabel("MB/s")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Throughput as the data set stops fitting in the cache (random 256 KiB files)")
        fig.tight_layout()
        fig.savefig(img / "bench-cache.png", dpi=110)
        plt.close(fig)
        made.append("bench-cache.png")
    return made


def _busy_warning(results: dict) -> list[str]:
    rows = [r for wl in results["workloads"].values() for r in wl["rows"].values() if ok(r)]
    n = sum(busy(r) for r in rows)
    if not n:
        return []
    return [f"**Warning: in {n} of {len(rows)} runs something else kept CPU 0 or 1 more than "
            f"{100 * BUSY:.0f}% busy, before or during the run; their figures are low and noisy (see the notes "
            "column). Re-run on an idle machine.**", ""]


def render(results: dict, images: list[str]) -> str:
    m = results["machine"]
    sets = results.get("sets", {})
    out = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py`; do not edit by hand. Re-run it to refresh this page.",
        "",
        "## How to run",
        "",
        "    python bench/run.py            # every workload and server, about 20 minutes",
        "    python bench/run.py --quick    # 2 s points, fewer servers and points, about 3 minutes",
        "    python bench/run.py --only real   # real traffic (r) alone, about 5 minutes",
        "    python bench/run.py --only m      # two workers on both cores, beside nginx's two",
        "    python bench/run.py --only a,d --duration 3 --arch amped,sped --servers nginx,flashplug-amped",
        "",
        "It installs what is missing (`apt-get install -y nginx-light lighttpd wrk`; `pip install aiohttp",
        "matplotlib` into the running interpreter), generates a document root in a temporary directory, and",
        "starts each server in turn on a free loopback port under `taskset -c 0`, with wrk (`-t1`, `--latency`)",
        "and every helper under `taskset -c 1`. Each point is measured after a warm-up of the same load",
        "(`--warmup`, 2 s), so every server is seen in its steady state. The servers of (r), (a), (b) and (h) take",
        "turns for three rounds (`--rounds`) and each keeps its median run, since they differ by less than this",
        "machine's noise between two runs. Raw results are kept in `bench/last-run.json`;",
        "`python bench/report.py` re-renders this page from them. `--only` re-measures some workloads and",
        "merges them into the previous results; each table still comes from one invocation.",
        "",
        "## This run",
        "",
        f"- date: {results['date']}; command: `{results['command']}`",
        f"- machine: {m['nproc']} CPUs ({m['cpu']}), {m['mem_gib']} GiB RAM, Linux {m['kernel']}, Python {m['python']}",
        f"- servers: {m['nginx']}; {m['lighttpd']}; aiohttp {m['aiohttp']}; flashplug at commit {m['flashplug_commit']}",
        f"- load: {m['wrk']}",
        *([f"- flashplug-before: the `--baseline` install, flashplug at commit {results['baseline']['commit']}"]
          if results.get("baseline") else []),
        "",
        *_busy_warning(results),
        "### Real traffic (r), requests/s",
        "",
        "Browser-like request heads, all different from one another unless the last column says otherwise;",
        "flashplug (`--arch amped`, one worker) against the faster of nginx and lighttpd in the same run.",
        "",
        *real_traffic(results),
        "",
        "### Summary (requests/s)",
        "",
        *summary(results),
        "",
        "## Targets (issue 12, point 2; issue 6, point 7; issue 14, point 6)",
        "",
        *targets(results),
        "",
        "## Method",
        "",
        "- Servers: nginx (`worker_processes 1`, `sendfile on`, `tcp_nopush`, keep-alive, `open_file_cache`;",
        "  `nginx-aio` adds `aio threads`), lighttpd (one process, sendfile), `http.server` (its",
        "  ThreadingHTTPServer and SimpleHTTPRequestHandler, as `python -m http.server` runs them, with the",
        "  per-request log line silenced), aiohttp (`bench/aiohttp_static.py`, `web.static`), and",
        "  `flashplug serve ROOT --access-log off --arch ARCH --workers 1 --keepalive-timeout 300 --plugins status`. Access",
        "  logs are off everywhere; keep-alive timeouts are long everywhere, and request limits per",
        "  connection high on nginx and lighttpd.",
        "- (r), real traffic: wrk's Lua script (written by `bench/wrk.py` from the header sets in",
        "  `bench/traffic.py`, with a fixed seed) builds every request head itself, as clients send them:",
        "  Firefox 133, Chrome 131 (with its `sec-ch-ua` fields), Safari 18 and curl 8, each in its own field",
        "  order with its own Accept, Accept-Language, Accept-Encoding, User-Agent, Sec-Fetch-*,",
        "  Upgrade-Insecure-Requests and `Connection: keep-alive`. `r-browser` picks one of the four for",
        "  each request, and a cookie (curl: a query) carries the request's number, so no head repeats.",
        "  `r-clients` draws from 1,000 clients over 256 connections, each client with a fixed head of its",
        "  own (browser in rough market shares, version, platform, language, session cookie). `r-reval`",
        "  sends the four heads with a changing cookie; of every four requests one is unconditional and",
        "  three carry that server's own validators (If-None-Match, If-Modified-Since, or both, as a",
        "  browser revalidating does), which the harness reads from it with one GET before the run.",
        "  `r-zipf` sends the 1,000 clients' heads over the Zipf sample of (b). The warm-up makes other",
        "  picks with other request numbers, so the measured run's changing heads are new to the server.",
        "  wrk's `response` callback counts every status: a run with any answer other than 200, or, in",
        "  `r-reval`, whose 304s are not 75% (within 2 points) of its answers, is marked as giving wrong",
        "  answers and its throughput is not counted.",
        "- Known heads: flashplug answers a request head without parsing it when it has answered one of",
        "  the same shape from the cache before: the same bytes but for the request-target and the value of",
        "  the first Cookie field (docs/architecture.md). The (r) tables give the share of heads wrk had",
        "  already sent byte for byte in flashplug's run; the shape shortcut answers more than that: in",
        "  r-browser and r-reval, whose heads never repeat, every head after the second of its shape",
        "  (4 shapes in r-browser, 16 in r-reval). (a)'s heads all repeat. The last column of the (r)",
        "  table is the shortcut's real hit rate: the status plugin's `heads_known` and `heads_shaped`",
        "  counters, read just before and just after the measured run (so the warm-up is not in it);",
        "  that plugin is on in every flashplug run for this, and adds one prefix route, which a",
        "  remembered head never consults.",
        "- Figures: req/s and MB/s (10^6 bytes, headers included) from wrk's own counters; p99 latency",
        "  from `--latency`; peak RSS is the largest sum of VmRSS over the server's whole process tree",
        "  (master, workers, helpers, CGI children) sampled ten times a second during the measured run.",
        "  \"server CPU\" is the tree's CPU time over the run's wall time: near 100% means the server",
        "  saturated its core; much less means the client or the disk was the limit, or something else ran.",
        "  \"CPU µs/req\" is that CPU time per request: the cost of one request, which another job on the",
        "  machine changes less than it changes req/s.",
        "  Each server is started fresh for each point, after checking how busy both CPUs were; a run is",
        "  flagged when other tasks used more than 10% of a CPU just before it, or of CPU 0 during it.",
        f"- (b): 10,000 files ({sets.get('set_mib', '?')} MiB) with SPECweb96's size classes; a sample of",
        "  200,000 paths drawn from a Zipf distribution (alpha 0.8) over them, picked at random by wrk's",
        "  Lua script.",
        f"- (c): 4,000 files of 256 KiB ({sets.get('disk_mib', '?')} MiB), requested uniformly at random.",
        "  `bench/evict.py` calls `posix_fadvise(POSIX_FADV_DONTNEED)` on the evicted share every 50 ms",
        "  while the load runs; the notes give the share of evicted files still resident just before the",
        "  load (a check that eviction works) and how long one sweep took. The cache curve varies that",
        "  share (0% = everything cached) rather than the machine's RAM.",
        "- (d): `bench/idle_clients.py` opens the connections from CPU 1, sends one request on each, reads",
        "  the answer and leaves it idle. RSS per idle connection = (tree RSS after - before) / connections",
        "  held. Then wrk measures 64 active connections meanwhile; \"still open\" counts the idle",
        "  connections the server had not closed by the end. `http.server` speaks HTTP/1.0 and closes every",
        "  connection, so it is not in (d). lighttpd accepts at most half its descriptor limit as",
        f"  connections; the hard RLIMIT_NOFILE here is {m.get('nofile_hard', '?')}, so with 10,000 idle it may",
        "  refuse the active client (its stderr then says \"connection limit reached\").",
        "- (e): `/bin/sh` and Python hello-world CGI scripts, 16 connections, flashplug `--plugins cgi`",
        "  against lighttpd `mod_cgi`. Run as root (as here), flashplug runs scripts as `nobody` (`--cgi-user`),",
        "  which `posix_spawn` cannot do: each script is forked from the server, about 3x slower (on this",
        "  machine ~400 against ~1,400 spawns/s with `--cgi-user root`, the `posix_spawn` path); lighttpd runs",
        "  them as root.",
        "- (h), HTTPS (issue 14, point 6): nginx (as above, plus `listen ... ssl`, TLS 1.2 and 1.3, session",
        "  tickets) and flashplug (`--tls-cert`/`--tls-key`) serve the same ECDSA P-256 certificate, made by",
        "  openssl for the run; wrk negotiates TLS 1.3 with both. `h-new-conn` sends `Connection: close` with",
        "  every request, so each one is a new TCP connection; but wrk keeps its TLS session across",
        "  reconnects, so every handshake after a connection's first resumes it (a PSK and a fresh X25519",
        "  exchange, no certificate). `python bench/https_bench.py` measures full handshakes too",
        "  (`openssl s_time -new`), with each server's CPU time per request.",
        "- (m), two workers on a 2-core machine (issue 12, point 5): nginx with `worker_processes 2` and",
        "  `flashplug --workers 2`, each under `taskset -c 0,1`, and wrk with two threads (`-t2`) under",
        "  `taskset -c 0,1` too: the load generator has no core of its own here, so it takes CPU from the",
        "  server it measures, and the figures are of the pair; server CPU is the whole process tree's, out",
        "  of 200%. The browser heads are r-browser's, with each wrk thread numbering its own requests.",
        "  A comparison, not a target.",
        "- Dynamic content (issue 16) is measured by `bench/fastcgi_bench.py` and `bench/proxy_bench.py`, not",
        "  here: their tables, and what limits flashplug there (CPU per request, not system calls or stalls),",
        "  are in docs/fastcgi.md and docs/proxy.md, \"Speed\". A php-fpm child serves one kept-alive",
        "  connection until it is closed, so the FastCGI bench gives the pool a child per client connection:",
        "  with fewer, nginx's requests waited on connections no child read, and its rate swung from 0 to",
        "  8,000 req/s between runs.",
        "- A server that does not start is listed with the last line of its stderr; the run goes on.",
        "",
    ]
    for key, wl in ordered(results["workloads"]):
        rounds = wl.get("rounds", 1)
        out += [f"## {wl['title']}", "", f"`{key}` — {wl['duration']:g} s after {wl.get('warmup', 0):g} s of warm-up, "
                + (f"median of {rounds} rounds, " if rounds > 1 else "")
                + f"{wl['connections']} connections, "
                f"{wl['time']}", "", *table(wl), ""]
        if key == "a-1m" and "bench-filesize.png" in images:
            out += ["![throughput against file size](img/bench-filesize.png)", ""]
        if key == "c-evict-100" and "bench-cache.png" in images:
            out += ["![throughput as the data set leaves the cache](img/bench-cache.png)", ""]
    return "\n".join(out)


def write(results: dict, md: Path) -> None:
    images = plots(results, md.parent / "img")
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text(render(results, images))


if __name__ == "__main__":
    write(json.loads((HERE / "last-run.json").read_text()),
          Path(sys.argv[1]) if len(sys.argv) > 1 else HERE.parent / "docs" / "benchmarks.md")
