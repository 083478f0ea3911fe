"""Remembered request heads (``StaticFiles.known_shapes``, ``known_heads``) on a real server.

A plain cached GET/HEAD whose exact bytes arrive again on an idle
connection is answered without running the parser.  These tests send the
same bytes repeatedly, as a browser or a load generator does, and check that
every answer is what the full path would give: keep-alive and close, HEAD,
HTTP/1.0, pipelining, an edited file, a head that is not plain, and bytes
that do not parse at all.
"""
import time

import pytest

from test_kernel_http import Closed, error_then_closed, req, wire

BODY = b"remembered\n"


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_bytes(BODY)
    return root


def test_same_bytes_again_get_the_same_answer(server_factory, root):
    srv = server_factory(root, "--access-log", "-")
    raw = req("/a.txt", extra=b"User-Agent: probe/1\r\nReferer: http://r/\r\n")
    w = wire(srv)
    for _ in range(5):
        w.send(raw)
        status, headers, body = w.response()
        assert (status, body) == (200, BODY)
        assert headers["content-length"] == [str(len(BODY))]
        assert "connection" not in headers
    w.close()
    srv.stop()
    lines = [ln for ln in srv.log().splitlines() if "GET /a.txt" in ln]
    assert len(lines) == 5, srv.log()
    # The remembered answers log exactly what the parsed one did.
    assert len({ln.split("]", 1)[1] for ln in lines}) == 1, lines
    assert '"http://r/" "probe/1"' in lines[-1]


def test_remembered_head_still_sees_an_edit(server_factory, root):
    srv = server_factory(root, "--cache-valid", "0.05", "--access-log", "off")
    raw = req("/a.txt")
    w = wire(srv)
    for _ in range(3):
        w.send(raw)
        assert w.response()[2] == BODY
    (root / "a.txt").write_bytes(b"edited, and longer\n")
    time.sleep(0.2)
    w.send(raw)
    assert w.response()[2] == b"edited, and longer\n"
    (root / "a.txt").unlink()
    time.sleep(0.2)
    w.send(raw)
    assert w.response()[0] == 404


def answered_then_closed(srv, raw, times=3):
    """The same bytes, each time on a new connection: the file, then a close."""
    for _ in range(times):
        w = wire(srv)
        w.send(raw)
        status, headers, body = w.response()
        assert (status, body) == (200, BODY)
        assert headers["connection"] == ["close"]
        assert w.closed_by_peer()
        w.close()


def test_remembered_close_request_still_closes(server_factory, root):
    srv = server_factory(root, "--access-log", "off")
    answered_then_closed(srv, req("/a.txt", extra=b"Connection: close\r\n"))
    answered_then_closed(srv, req("/a.txt", version=b"HTTP/1.0", host=None))


def test_remembered_http10_keep_alive(server_factory, root):
    srv = server_factory(root, "--access-log", "off")
    raw = req("/a.txt", version=b"HTTP/1.0", extra=b"Connection: keep-alive\r\n")
    w = wire(srv)
    for _ in range(3):
        w.send(raw)
        status, headers, body = w.response()
        assert (status, body) == (200, BODY)
        assert headers["connection"] == ["keep-alive"]
    w.close()


def test_remembered_head_request_has_no_body(server_factory, root):
    srv = server_factory(root, "--access-log", "off")
    w = wire(srv)
    for _ in range(3):
        w.send(req("/a.txt", method="HEAD"))
        status, headers, body = w.response(head=True)
        assert status == 200 and headers["content-length"] == [str(len(BODY))]
        w.send(req("/a.txt"))
        assert w.response()[2] == BODY
    w.send(req("/a.txt", method="HEAD"))
    w.response(head=True)
    assert w.buf == b"", "a HEAD answer carried a body"
    w.close()


def test_two_known_heads_in_one_packet_get_two_answers(server_factory, root):
    srv = server_factory(root, "--access-log", "off")
    raw = req("/a.txt")
    w = wire(srv)
    w.send(raw)
    assert w.response()[2] == BODY
    w.send(raw + raw)
    assert w.response()[2] == BODY
    assert w.response()[2] == BODY
    w.send(raw)                  # and the single one is still answered alone
    assert w.response()[2] == BODY
    w.close()


def test_upgrade_head_is_never_remembered(server_factory, root):
    # (Remembered, it would skip the Upgrade's pause, in which a plugin may
    # take the connection.)  Ignored, it is served and the connection goes
    # on, each time alike.
    srv = server_factory(root, "--access-log", "off")
    for _ in range(3):
        w = wire(srv)
        w.send(req("/a.txt", extra=b"Connection: Upgrade\r\nUpgrade: h2c\r\n") + req("/a.txt"))
        for _ in range(2):
            status, headers, body = w.response()
            assert (status, body) == (200, BODY) and "connection" not in headers
        w.close()


def test_garbage_after_a_known_head_is_still_an_error(server_factory, root):
    # The first connection teaches the server a head; bytes that do not
    # parse must never be mistaken for it later, on any connection.
    srv = server_factory(root, "--access-log", "off")
    w = wire(srv)
    w.send(req("/a.txt"))
    assert w.response()[2] == BODY
    w.send(b"\x16\x03\x01garbage\r\n\r\n")
    try:
        status = w.response()[0]
    except Closed:
        status = None
    assert status == 400
    w.close()
    for _ in range(2):
        error_then_closed(srv, b"\x16\x03\x01garbage\r\n\r\n", 400)
        error_then_closed(srv, b"GET /a.txt HTTP/1.1\r\n\r\n", 400)   # no Host


def test_a_due_entry_is_checked_then_answered_in_order(server_factory, root):
    # Past --cache-valid, a remembered head waits for one stat in a helper;
    # a request sent meanwhile is answered after it, in order.
    (root / "b.txt").write_bytes(b"second\n")
    srv = server_factory(root, "--cache-valid", "0.05", "--access-log", "off")
    raw = req("/a.txt")
    w = wire(srv)
    for _ in range(2):
        w.send(raw)
        assert w.response()[2] == BODY
    for _ in range(3):
        time.sleep(0.15)                  # due again
        w.send(raw)
        w.send(req("/b.txt"))
        assert w.response()[2] == BODY
        assert w.response()[2] == b"second\n"
    w.close()


def test_one_shape_with_other_targets_and_cookies(server_factory, root):
    # A browser's head again, with another target and another cookie each
    # time: remembered by its shape, each answer is still its own target's,
    # and the log shows the target as sent.
    (root / "b.txt").write_bytes(b"bee\n")
    (root / "d").mkdir()
    srv = server_factory(root, "--access-log", "-")
    shape = (b"GET %s HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/2\r\n"
             b"Cookie: sid=%d; seen=%d\r\nAccept: */*\r\n\r\n")
    want = {b"/a.txt": (200, BODY), b"/b.txt": (200, b"bee\n"), b"/a.txt?v=%d": (200, BODY),
            b"/missing": (404, None), b"/d": (301, None), b"/a.txt\x01": (400, None)}
    w = wire(srv)
    sent = []
    for i in range(40):
        target = list(want)[i % len(want)]
        target = target % i if b"%d" in target else target
        w.send(shape % (target, i, i * 7))
        status, _, body = w.response()
        expected = want[list(want)[i % len(want)]]
        assert status == expected[0], (target, status)
        if expected[1] is not None:
            assert body == expected[1]
        if status == 400:
            w.close()
            w = wire(srv)
        else:
            sent.append(target)
    w.close()
    srv.stop()
    logged = [ln.split('"')[1].split(" ")[1] for ln in srv.log().splitlines() if '"GET ' in ln]
    assert [t.decode() for t in sent] == [t for t in logged if "\\x01" not in t]


def test_remembered_revalidation_sees_an_edit(server_factory, root):
    # A browser revalidating with a changing cookie: 304s from its remembered
    # shape, then the edited file (200), then 304s for its new validators.
    srv = server_factory(root, "--cache-valid", "0.05", "--access-log", "off")
    w = wire(srv)
    w.send(req("/a.txt"))
    status, headers, _ = w.response()
    etag = headers["etag"][0].encode()
    shape = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nCookie: n=%d\r\nIf-None-Match: %s\r\n\r\n"
    for i in range(4):
        w.send(shape % (i, etag))
        assert w.response()[0] == 304
    (root / "a.txt").write_bytes(b"edited, and longer\n")
    time.sleep(0.2)
    w.send(shape % (9, etag))
    status, headers, body = w.response()
    assert (status, body) == (200, b"edited, and longer\n")
    for i in range(4):
        w.send(shape % (i, headers["etag"][0].encode()))
        assert w.response()[0] == 304
    w.close()


def test_status_counts_heads_answered_without_a_parse(server_factory, root):
    # heads_known / heads_shaped say how often the shortcuts answered: what
    # bench/ reports as the known-heads hit rate.
    import json
    srv = server_factory(root, "--plugins", "status", "--access-log", "off")

    def counters():
        w = wire(srv)
        w.send(req("/server-status?format=json", extra=b"Connection: close\r\n"))
        values = json.loads(w.response()[2])
        w.close()
        return values["requests"], values["heads_known"], values["heads_shaped"]

    w = wire(srv)
    same = req("/a.txt", extra=b"User-Agent: probe/3\r\n")
    for _ in range(12):
        w.send(same)
        assert w.response()[2] == BODY
    requests, known, shaped = counters()
    # Parsed until its shape is remembered, then answered by shape until
    # the bytes themselves are (each table keeps a head on its second sight).
    assert requests == 12 and known >= 4 and 8 <= known + shaped <= 10, (known, shaped)
    shaped_before = shaped
    shape = b"GET /a.txt HTTP/1.1\r\nHost: t\r\nUser-Agent: probe/3\r\nCookie: n=%d\r\n\r\n"
    for i in range(10):
        w.send(shape % i)
        assert w.response()[2] == BODY
    _, known_after, shaped = counters()
    assert known_after == known         # (a status request is never a known head)
    assert shaped - shaped_before >= 8, shaped
