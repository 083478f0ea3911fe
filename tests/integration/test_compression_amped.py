"""AMPED discipline for --compress: compressing is CPU work, so it runs in
a helper thread while the loop goes on answering other clients, and two
clients wanting the same variant at once share one compression.

No timing: a compressor that waits for the test's word holds the
compression open, and the order of events shows the loop answered while it
was held.
"""
import concurrent.futures
import threading
import time

import brotli

import flashplug.compress as compress
from test_amped_discipline import get, serve_in_process

TEXT = b"".join(b"<li>item %d of a long compressible list</li>\n" % i for i in range(50000))


def body_of(raw):
    return raw.partition(b"\r\n\r\n")[2]


def test_compression_runs_in_a_helper_while_the_loop_answers_others(tmp_path, monkeypatch):
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.html").write_bytes(TEXT)
    (root / "small.txt").write_text("small")
    loop_thread = threading.get_ident()      # serve_in_process runs the loop here
    held = threading.Event()
    release = threading.Event()
    ran_on = []
    real = compress.COMPRESSORS["br"]

    def held_brotli(data):
        ran_on.append(threading.get_ident())
        held.set()
        release.wait(30)
        return real(data)
    monkeypatch.setitem(compress.COMPRESSORS, "br", held_brotli)

    def client(port, app):
        def busy():
            return sum(1 for c in list(app.connections) if c.active is not None)
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            bigs = [pool.submit(get, port, b"/big.html", b"Accept-Encoding: br\r\n")
                    for _ in range(2)]
            assert held.wait(10), "no compression started"
            deadline = time.monotonic() + 10
            while busy() < 2 and time.monotonic() < deadline:   # both wait for it
                time.sleep(0.01)
            waiting = busy()
            small = get(port, b"/small.txt")                   # while it is held
            answered_while_held = not release.is_set()
            release.set()
            return waiting, small, answered_while_held, [f.result() for f in bigs]

    def client_then_count(port, app):
        return client(port, app), app.stats.compressions

    (waiting, small, answered_while_held, bigs), compressions = serve_in_process(
        root, client_then_count, "--compress")
    assert compressions == 1
    assert waiting == 2
    assert small[0] == 200 and body_of(small[1]) == b"small"
    assert answered_while_held
    assert ran_on and all(t != loop_thread for t in ran_on)   # a helper, not the loop
    assert len(ran_on) == 1                                   # one compression for both
    for status, raw in bigs:
        assert status == 200 and b"Content-Encoding: br\r\n" in raw
        assert brotli.decompress(body_of(raw)) == TEXT
