"""Unit tests of the benchmark harness's pure parts (no sockets, no servers).

Run with: /work/venv/bin/pytest bench/test_harness.py
They check that the harness reads wrk correctly, draws the request mix it
claims to, and judges the targets honestly; they never assert speed.
"""

import random
import sys
from collections import Counter
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import docroot  # noqa: E402
import report  # noqa: E402
import run  # noqa: E402
import servers  # noqa: E402
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
                    "--keepalive-timeout", "300", "--plugins", "none"]
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
