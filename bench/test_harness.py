"""Unit tests of the benchmark harness's pure parts (no sockets, no servers).

Run with: /work/venv/bin/pytest bench/test_harness.py
They check that the harness reads wrk correctly, draws the request mix it
claims to, and judges the targets honestly; they never assert speed.
"""

import random
import shutil
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import docroot  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import servers  # noqa: E402
import workloads  # noqa: E402
import wrk  # noqa: E402

WRK_OUT = """Running 2s test @ http://127.0.0.1:1/1k.bin
WRKRESULT {"requests":2000,"bytes":4000000,"duration_us":2000000,"connect":0,"read":3,"write":0,"status":0,"timeout":0,"p50_us":500,"p99_us":2500,"max_us":9000}
"""


def test_wrk_parse_reads_the_done_line():
    r = wrk.parse(WRK_OUT)
    assert r["requests"] == 2000
    assert r["rps"] == 1000.0
    assert r["mbps"] == 2.0
    assert r["p99_ms"] == 2.5
    assert r["errors"] == {"read": 3}


def test_wrk_parse_without_result_line_fails():
    try:
        wrk.parse("wrk: connection refused\n")
    except ValueError:
        return
    raise AssertionError("parse accepted output without a result line")


def test_wrk_script_picks_from_list_only_when_given(tmp_path):
    plain = wrk.script(tmp_path, "p").read_text()
    picked = wrk.script(tmp_path, "z", tmp_path / "list.txt").read_text()
    assert "request =" not in plain and "done =" in plain
    assert "request =" in picked and str(tmp_path / "list.txt") in picked


def test_zipf_sample_favours_low_ranks_by_the_power_law():
    counts = Counter(docroot.zipf_sample(1000, 200_000, 1.0, random.Random(1)))
    # P(rank 1) / P(rank 10) = 10 for alpha 1; allow sampling noise.
    assert 8 < counts[0] / counts[9] < 12
    assert counts[0] > counts[99] > 0


def test_set_sizes_follow_the_classes():
    sizes = docroot.set_sizes(10_000, random.Random(2))
    assert len(sizes) == 10_000
    small = sum(s <= 1024 for s in sizes) / len(sizes)
    assert 0.30 < small < 0.40
    assert max(sizes) <= 921600


def test_nginx_config_has_the_promised_settings(tmp_path):
    argv = servers.command(servers.NGINX_AIO, tmp_path, tmp_path, 12345)
    conf = Path(argv[-1]).read_text()
    for needle in ("worker_processes 1;", "sendfile on;", "tcp_nopush on;", "aio threads;",
                   "open_file_cache max=", "access_log off;", "listen 127.0.0.1:12345"):
        assert needle in conf
    plain = Path(servers.command(servers.NGINX, tmp_path, tmp_path, 12346)[-1]).read_text()
    assert "aio threads" not in plain


def test_flashplug_command_line(tmp_path):
    argv = servers.command(servers.flashplug("mt"), tmp_path, tmp_path, 8001)
    tail = argv[argv.index("serve"):]
    assert tail == ["serve", str(tmp_path), "--port", "8001", "--access-log", "off", "--arch", "mt", "--workers", "1",
                    "--keepalive-timeout", "300", "--plugins", ""]   # mt and mp refuse plugins
    amped = servers.command(servers.flashplug("amped"), tmp_path, tmp_path, 8003)
    assert amped[-2:] == ["--plugins", "status"]     # its counters give the shortcut's hit rate
    cgi = servers.command(servers.flashplug("amped", cgi=True), tmp_path, tmp_path, 8002)
    assert cgi[-2:] == ["--plugins", "cgi"]


def _row(rps, **kw):
    return {"rps": rps, "mbps": rps / 1000, "p99_ms": 1.0, "p50_ms": 0.5, "peak_rss": 2**20, "errors": {}, **kw}


def _results(workloads):
    return {"workloads": workloads, "date": "today", "command": "python bench/run.py",
            "machine": {k: "x" for k in ("nproc", "cpu", "mem_gib", "kernel", "python", "nginx",
                                         "lighttpd", "aiohttp", "flashplug_commit", "wrk")}}


def _wl(group, rows, **kw):
    return {"title": "t", "group": group, "time": "now", "duration": 1, "connections": 64,
            "labels": {}, "rows": rows, **kw}


def test_targets_judge_ratios_and_missing_servers():
    res = _results({
        "a-1k": _wl("a", {"nginx": _row(100.0), "flashplug-amped": _row(150.0), "aiohttp": _row(10.0)}),
        "a-100k": _wl("a", {"lighttpd": _row(100.0), "flashplug-amped": _row(99.0)}),
        "d-idle": _wl("d", {"flashplug-amped": _row(5.0, rss_per_conn=3000, held=10, alive=10)}),
        "c-evict-100": _wl("c", {"flashplug-amped": {"failed": "failed to start: boom"}}, evict=100),
    })
    lines = "\n".join(report.targets(res))
    assert "| 1 KiB cached: >= 1.0x nginx req/s | 1.50x (150 vs 100 req/s) | yes |" in lines
    assert "| 100 KiB: >= 1.0x lighttpd req/s | 0.99x (99 vs 100 req/s) | no |" in lines
    assert "| 1 KiB: >= 25x aiohttp static req/s | 15.00x" in lines and lines.count("| no |") >= 3
    assert "2.93 KiB | no |" in lines
    assert "not measured (flashplug-amped: failed to start: boom)" in lines
    assert "| 1 MiB: >= 1.0x lighttpd req/s | not measured" in lines


def test_tables_give_ratios_to_nginx_and_show_failures():
    wl = _wl("a", {"nginx": _row(200.0), "flashplug-sped": _row(100.0), "mt": {"failed": "failed to start: x"}})
    text = "\n".join(report.table(wl))
    assert "100 (0.50x)" in text and "200 (1.00x)" in text
    assert "failed to start: x" in text


def test_render_writes_every_workload(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the bench extra: pip install -e '.[bench]'")
    res = _results({"a-1k": _wl("a", {"nginx": _row(1.0)}), "e-cgi-sh": _wl("e", {"lighttpd-cgi": _row(5.0)})})
    report.write(res, tmp_path / "benchmarks.md")
    md = (tmp_path / "benchmarks.md").read_text()
    assert "## Targets" in md and "`a-1k`" in md and "`e-cgi-sh`" in md
    assert "Ratios in parentheses are to lighttpd-cgi" in md
    assert (tmp_path / "img" / "bench-filesize.png").exists()


def test_quick_plan_is_smaller_and_only_filters():
    full = run.plan(run.parse_args([]))
    quick = run.plan(run.parse_args(["--quick"]))
    assert sum(len(p["specs"]) for p in quick) < sum(len(p["specs"]) for p in full)
    only = run.plan(run.parse_args(["--only", "idle", "--arch", "sped"]))
    assert [p["key"] for p in only] == ["d-idle"]
    assert [s.name for s in only[0]["specs"]][-1] == "flashplug-sped"
    disk = run.plan(run.parse_args(["--only", "c"]))
    assert [p["evict"] for p in disk] == [0, 50, 100]   # nested eviction sets need this order


def test_busy_machine_is_flagged():
    quiet = _row(10.0, busy_before=[0.02, 0.05], server_cpu=0.99)
    noisy = _row(10.0, busy_before=[0.60, 0.05], server_cpu=0.40)
    assert not report.busy(quiet) and report.busy(noisy)
    res = _results({"a-1k": _wl("a", {"nginx": quiet, "lighttpd": noisy})})
    md = report.render(res, [])
    assert "Warning: in 1 of 2 runs" in md
    assert "machine busy before the run: CPU 0 60%" in md
    assert "| 99% |" in md


def test_load_during_the_run_is_flagged():
    row = _row(10.0, busy_before=[0.0, 0.0], server_cpu=0.5, other_on_core=0.45)
    assert report.busy(row)
    assert "other tasks took 45% of the server's core" in report._notes(row)


def test_the_median_round_is_kept_with_every_rounds_figure():
    from run import median_run
    rows = [{"rps": 30.0, "errors": {}}, {"failed": "did not start"}, {"rps": 10.0, "errors": {}},
            {"rps": 20.0, "errors": {}}]
    kept = median_run(rows)
    assert kept["rps"] == 20.0
    assert kept["rounds_rps"] == [30.0, 0.0, 10.0, 20.0]
    assert median_run([{"failed": "x"}]) == {"failed": "x"}
    assert "rounds_rps" not in median_run([{"rps": 5.0, "errors": {}}])


# -- real traffic (r) ------------------------------------------------------------

import traffic  # noqa: E402


def _assemble(t, path, n=None, end=""):
    """What wrk's script sends for template t (see wrk._VARYING and _FIXED)."""
    return t.before + path + t.after + (f"{n}{t.rest}{end}" if t.rest is not None else "")


def _fields(head):
    assert head.endswith("\r\n\r\n") and head.count("\r\n\r\n") == 1
    line, *rest = head[:-4].split("\r\n")
    fields = [tuple(f.split(": ", 1)) for f in rest]
    assert all(len(f) == 2 and f[0] and f[1].strip() == f[1] for f in fields)
    return line, fields


def test_browser_heads_are_whole_heads_in_each_clients_order():
    heads = [_assemble(t, "/1k.bin", 7) for t in traffic.browsers("127.0.0.1:8080")]
    parsed = [_fields(h) for h in heads]
    for line, fields in parsed:
        names = [k for k, _ in fields]
        assert names[0] == "Host" and dict(fields)["Host"] == "127.0.0.1:8080"
        assert len(set(n.lower() for n in names)) == len(names)
        assert line.startswith("GET /1k.bin") and line.endswith(" HTTP/1.1")
    firefox, chrome, safari, curl = (dict(f) for _, f in parsed)
    assert "Firefox/" in firefox["User-Agent"] and "sec-ch-ua" not in firefox
    assert "Chrome/" in chrome["User-Agent"] and chrome["sec-ch-ua-mobile"] == "?0"
    assert "Version/18" in safari["User-Agent"]
    for browser in (firefox, chrome, safari):
        assert browser["Connection"] == "keep-alive" and browser["Sec-Fetch-Mode"] == "navigate"
        assert browser["Cookie"].endswith("last_seen=7") and "br" in browser["Accept-Encoding"]
    assert curl == {"Host": "127.0.0.1:8080", "User-Agent": "curl/8.11.0", "Accept": "*/*"}
    assert parsed[3][0] == "GET /1k.bin?v=7 HTTP/1.1"
    # Chrome sends Connection right after Host, Firefox its User-Agent.
    assert [k for k, _ in parsed[1][1]][1] == "Connection" and [k for k, _ in parsed[0][1]][1] == "User-Agent"


def test_a_changing_head_differs_on_every_request():
    t = traffic.browsers("h")[0]
    assert len({_assemble(t, "/1k.bin", n) for n in range(1000)}) == 1000


def test_many_clients_are_distinct_fixed_and_deterministic():
    made = traffic.many("127.0.0.1:1")
    heads = [_assemble(t, "/1k.bin") for t in made]
    assert len(made) == traffic.N_CLIENTS == len(set(heads))
    assert all(t.rest is None for t in made)
    assert made == traffic.many("127.0.0.1:1")
    agents = Counter(dict(_fields(h)[1])["User-Agent"].split("/")[0] for h in heads)
    assert agents["curl"] > 0 and agents["Mozilla"] > 900
    assert sum("Firefox/" in h for h in heads) > 50 and sum("sec-ch-ua" in h for h in heads) > 400
    assert all("Cookie: sid=" in h for h in heads)


def test_revalidation_heads_take_a_validator_before_the_blank_line():
    w = next(w for w in traffic.WORKLOADS if w.revalidate)
    conds = traffic.conditions('"5f-1a"', "Mon, 30 Nov 2026 07:00:00 GMT")
    assert conds[0] == "" and len(conds) == 4
    for t in traffic.templates(w, "h"):
        heads = [_assemble(t, "/1k.bin", n, conds[n % 4] + "\r\n") for n in range(4)]
        fields = [dict(_fields(h)[1]) for h in heads]
        assert "If-None-Match" not in fields[0] and "If-Modified-Since" not in fields[0]
        assert fields[1]["If-None-Match"] == '"5f-1a"' and "If-Modified-Since" not in fields[1]
        assert fields[2]["If-Modified-Since"] == "Mon, 30 Nov 2026 07:00:00 GMT"
        assert "If-None-Match" in fields[3] and "If-Modified-Since" in fields[3]
    assert traffic.REVALIDATED_SHARE == 3 / 4


def test_template_needs_a_path_mark():
    with pytest.raises(ValueError):
        traffic.template("GET / HTTP/1.1\r\n\r\n")


def test_lua_strings_escape_and_refuse_control_characters():
    assert wrk.lua_string('a"b\\c\r\n') == '"a\\"b\\\\c\\r\\n"'
    with pytest.raises(ValueError):
        wrk.lua_string("a\0b")
    with pytest.raises(ValueError):
        wrk.lua_string("caf\u00e9")


def test_real_script_for_changing_heads(tmp_path):
    made = traffic.browsers("127.0.0.1:9")
    lua = wrk.real_script(tmp_path, "b", made, seed=5, start=1000,
                          conditions=traffic.conditions('"e"', "Mon, 30 Nov 2026 07:00:00 GMT")).read_text()
    assert "math.randomseed(5)" in lua and "local n = 1000" in lua
    assert "h[1] .. paths[math.random(np)] .. h[2] .. k .. h[3] .. conds[k % 4 + 1]" in lua
    assert 'local paths, ids = {"/1k.bin"}, {0}' in lua
    assert wrk.lua_string(made[0].before) in lua and wrk.lua_string(made[3].rest) in lua
    assert '"\\r\\n", "If-None-Match: \\"e\\"\\r\\n\\r\\n"' in lua   # none, then If-None-Match
    assert "response = function(status" in lua and 'WRKRESULT' in lua and '"codes":{%s}' in lua
    assert "local seen" not in lua   # every head is new: nothing to count


def test_real_script_for_fixed_heads_counts_repeats_over_a_path_list(tmp_path):
    made = traffic.many("h", n=3)
    lua = wrk.real_script(tmp_path, "z", made, path="/", paths_file=tmp_path / "zipf.txt").read_text()
    assert f'io.lines("{tmp_path / "zipf.txt"}")' in lua
    assert "local key = ids[pi] * nh + hi" in lua and "repeats = repeats + 1" in lua
    assert "return h[1] .. paths[pi] .. h[2]\n" in lua
    assert lua.count("\n  {") == 3


def test_real_script_refuses_mixed_templates(tmp_path):
    with pytest.raises(ValueError):
        wrk.real_script(tmp_path, "x", traffic.many("h", n=1) + traffic.browsers("h"))
    with pytest.raises(ValueError):
        wrk.real_script(tmp_path, "x", traffic.many("h", n=1), conditions=["", "a", "b", "c"])


def test_wrk_parse_reads_status_counts():
    line = WRK_OUT.replace('"max_us":9000}', '"max_us":9000,"codes":{"200":500,"304":1500},"sent":2010,"repeats":7}')
    r = wrk.parse(line)
    assert r["codes"] == {"200": 500, "304": 1500} and r["sent"] == 2010 and r["repeats"] == 7
    assert "codes" not in wrk.parse(WRK_OUT)


def test_status_problem_flags_wrong_answers():
    assert wrk.status_problem({"200": 1000}) is None
    assert wrk.status_problem({"200": 250, "304": 750}, 0.75) is None
    assert "404 x3" in wrk.status_problem({"200": 1000, "404": 3})
    assert "500" in wrk.status_problem({"200": 250, "304": 700, "500": 50}, 0.75)
    # 200 where a 304 was due: the validators were not honoured.
    assert "0% 304s where 75% were due" in wrk.status_problem({"200": 1000}, 0.75)
    assert "304s where 0% were due" in wrk.status_problem({"200": 500, "304": 500})
    assert wrk.status_problem({}) == "no responses counted"


def test_plan_real_group_has_its_aliases_baseline_and_leads():
    only = run.plan(run.parse_args(["--only", "real", "--baseline", "/x/flashplug"]))
    assert [p["key"] for p in only] == ["r-browser", "r-clients", "r-reval", "r-zipf"]
    for p in only:
        assert [s.name for s in p["specs"]] == ["nginx", "lighttpd", "flashplug-before", "flashplug-amped"]
        assert p["connections"] == p["workload"].connections
    assert {p["key"]: p["connections"] for p in only}["r-clients"] == 256
    assert run.plan(run.parse_args(["--only", "r"]))[0]["key"] == "r-browser"
    assert run.plan(run.parse_args([]))[0]["group"] == "r"
    assert "r" in run.ROUNDED


def _real_row(rps, codes=None, **kw):
    return _row(rps, codes=codes or {"200": 100}, sent=100, repeats=kw.pop("repeats", 0), **kw)


def test_real_traffic_table_compares_with_the_faster_reference():
    res = _results({
        "r-clients": _wl("r", {"nginx": _real_row(100.0), "lighttpd": _real_row(200.0, repeats=80),
                               "flashplug-amped": _real_row(100.0, repeats=90, heads_known_share=0.9,
                                                            heads_shaped_share=0.05)}),
        "r-reval": _wl("r", {"nginx": _real_row(300.0, {"200": 25, "304": 75}),
                             "lighttpd": _real_row(100.0, {"200": 25, "304": 75}),
                             "flashplug-amped": _real_row(900.0, {"200": 100}, error="answered 200 x100")}),
        "a-1k": _wl("a", {"nginx": _row(1.0)}),
    })
    lines = report.real_traffic(res)
    assert lines[0] == ("| workload | nginx | lighttpd | flashplug-amped | flashplug / best | heads sent before "
                        "| flashplug's answers without a parse (exact + shape) |")
    assert "| r-clients | 100 | 200 | 100 | **0.50x** (lighttpd) | 90.0% | 95.0% (90.0 + 5.0) |" in lines
    assert "| r-reval | 300 | 100 | **wrong answers** | — | 0.0% | — |" in lines   # the count is the client's
    assert len(lines) == 4   # (a) is not real traffic
    table = "\n".join(report.table(res["workloads"]["r-reval"]))
    assert "| answers |" in table and "200 25%, 304 75%" in table and "answered 200 x100" in table
    assert "the faster of nginx and lighttpd in the same run (here nginx)" in table
    assert "already sent earlier in flashplug-amped's run, byte for byte: 0.0%" in table
    assert "0.50x (100 vs 200 req/s, lighttpd)" in "\n".join(report.targets(res))
    assert report.real_traffic(_results({}))[0].startswith("Not measured")


def test_the_page_leads_with_real_traffic():
    res = _results({"a-1k": _wl("a", {"nginx": _row(1.0)}),
                    "r-browser": _wl("r", {"nginx": _real_row(1.0)}, title="real one")})
    md = report.render(res, [])
    assert md.index("### Real traffic (r)") < md.index("### Summary")
    assert md.index("## real one") < md.index("## t\n")
    assert report.ordered(res["workloads"])[0][0] == "r-browser"


def test_a_run_with_wrong_answers_is_not_a_median_candidate():
    from run import median_run
    rows = [{"rps": 900.0, "errors": {}, "error": "answered 200 x9"}, {"rps": 10.0, "errors": {}},
            {"rps": 20.0, "errors": {}}]
    assert median_run(rows)["rps"] == 10.0
    assert "ERROR: answered 200 x9" in report.one_line("x", {**_real_row(900.0), "error": "answered 200 x9"})


def test_validators_come_from_the_server_or_the_run_stops(monkeypatch):
    import workloads
    answer = (200, {"etag": '"5f-1a"', "last-modified": "Mon, 30 Nov 2026 07:00:00 GMT"}, b"")
    monkeypatch.setattr(servers, "fetch", lambda port, path: answer)
    assert workloads.validators(1, "/1k.bin") == ('"5f-1a"', "Mon, 30 Nov 2026 07:00:00 GMT")
    answer = (200, {"last-modified": "Mon, 30 Nov 2026 07:00:00 GMT"}, b"")
    with pytest.raises(ValueError, match="nothing to revalidate against"):
        workloads.validators(1, "/1k.bin")


def test_https_group_serves_one_certificate_to_both_servers(tmp_path):
    pts = run.plan(run.parse_args(["--only", "https"]))
    assert [p["key"] for p in pts] == ["h-1k", "h-new-conn", "h-1m"]
    assert [s.name for s in pts[0]["specs"]] == ["nginx", "flashplug-amped"]
    assert pts[1].get("close") and not pts[0].get("close")
    if not shutil.which("openssl"):
        pytest.skip("openssl makes the certificate")
    conf = Path(servers.command(servers.NGINX_TLS, tmp_path, tmp_path, 12347)[-1]).read_text()
    cert, key = servers.tls_pair(tmp_path)
    assert "listen 127.0.0.1:12347 ssl" in conf and f"ssl_certificate {cert};" in conf
    argv = servers.command(servers.flashplug_tls(), tmp_path, tmp_path, 8003)
    assert argv[argv.index("--tls-cert") + 1] == str(cert) and argv[argv.index("--tls-key") + 1] == str(key)
    assert "ssl" not in Path(servers.command(servers.NGINX, tmp_path, tmp_path, 12348)[-1]).read_text()
    assert 'wrk.headers["Connection"] = "close"' in wrk.script(tmp_path, "close", close=True).read_text()


def test_a_short_soak_checks_every_body_and_finds_nothing_wrong():
    """CI's short version of bench/soak.py (the long one runs 10 minutes)."""
    import soak
    result = soak.soak(duration=6, clients=4, sample=1, warmup=2,
                       exe=[sys.executable, "-m", "flashplug"], extra=[], log=lambda line: None)
    assert result["requests"] > 50
    assert result["wrong"] == 0 and result["errors"] == 0, result["problems"]
    assert result["zombies_end"] == 0 and result["tracebacks"] == 0
    assert result["fds_after_load"] <= result["fds_after_warmup"] + 8


def test_shortcut_share_is_the_measured_runs_alone():
    before = {"requests": 1000, "heads_known": 100, "heads_shaped": 50}
    after = {"requests": 3000, "heads_known": 1100, "heads_shaped": 850}
    assert workloads.shortcut_share(before, after) == {"heads_known_share": 0.5, "heads_shaped_share": 0.4}
    # A --baseline build without the counters, or no status page: nothing claimed.
    assert workloads.shortcut_share({"requests": 1}, {"requests": 2}) == {}
    assert workloads.shortcut_share(before, None) == {}


def test_every_round_target_takes_the_lowest_round_by_round_ratio():
    res = _results({"a-1m-16": _wl("a", {
        "lighttpd": _row(100.0, rounds_rps=[100.0, 50.0, 100.0]),
        "flashplug-amped": _row(120.0, rounds_rps=[120.0, 130.0, 90.0])})})
    line = next(t for t in report.targets(res) if t.startswith("| 1 MiB, 16 connections"))
    # The medians (120 vs 100) would pass; the third round does not.
    assert "lowest round 0.90x (rounds 1.20x, 2.60x, 0.90x)" in line and line.endswith("| no |")


def test_zipf_plan_warms_every_measured_file_and_each_client_twice(tmp_path):
    import heads_client
    import traffic
    base = tmp_path
    (base / "root" / "set").mkdir(parents=True)
    for i in range(400):
        (base / "root" / "set" / f"{i:05d}.bin").write_bytes(b"x")
    (base / "zipf-paths.txt").write_text("".join(f"/set/{i % 50:05d}.bin\n" for i in range(1000)))
    warm, measured = heads_client.zipf_plan("zipf", 8080, base / "zipf-paths.txt", 300)
    again = heads_client.zipf_plan("zipf", 8080, base / "zipf-paths.txt", 300)
    assert (warm, measured) == again and len(measured) == 300     # the same bytes each time

    def target(head):
        return head.split(b" ", 2)[1]
    assert {target(h) for h in measured} <= {target(h) for h in warm}
    assert len(warm) >= 2 * traffic.N_CLIENTS
    assert all(h.endswith(b"\r\n\r\n") and b"Host: 127.0.0.1:8080\r\n" in h for h in warm + measured)
    warm, measured = heads_client.zipf_plan("miss", 8080, base / "zipf-paths.txt", 150)
    assert len({target(h) for h in measured}) == 150                # each file once
    assert not {target(h) for h in measured} & {target(h) for h in warm}


def test_heads_client_reads_each_response_by_its_length():
    import socket
    import threading

    import heads_client
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve():
        for _ in range(2):
            conn, _ = listener.accept()
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn):
        buf = b""
        while True:
            data = conn.recv(4096)
            if not data:
                conn.close()
                return
            buf += data
            while b"\r\n\r\n" in buf:
                head, _, buf = buf.partition(b"\r\n\r\n")
                body = head.split(b" ")[1] * 5000
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    threading.Thread(target=serve, daemon=True).start()
    heads = [b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % i for i in range(50)]
    assert heads_client.send(port, heads, 2, timeout=30) == {"200": 50}
    listener.close()


def test_strace_summary_is_read_by_name():
    import syscalls
    text = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 40.00    0.000400           2       200        10 newfstatat
 60.00    0.000600           3       100           recvfrom
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000           3       300        10 total
"""
    assert syscalls.parse_summary(text) == {"newfstatat": 200, "recvfrom": 100}
