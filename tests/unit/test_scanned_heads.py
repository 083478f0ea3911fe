"""The cached path for a whole request head (``H1Protocol._answer_scanned``)
against the full path, over many varied requests.

A head that arrives whole is checked by llhttp with no callback per field,
scanned once for the fields the cached path needs, and, for a cached
target, answered without a Request object: a plain GET/HEAD with a 200, a
revalidation (If-None-Match, If-Modified-Since) with a 304 or a 200 built
from the entry's prebuilt lines.  Each request here goes to two Apps over
one document root: one as configured, and one with the cached shortcuts off
(``fast_path_ok`` False: every request builds a Request and a Response and
is framed by ``send_response``).  The bytes sent (but the Date line), the
access-log lines and the counts must be the same.
"""
import gzip
import random

import httptools
import pytest
from hypothesis import given, strategies as st

from flashplug.connection import Connection
from flashplug.http.h1 import H1Protocol, known_key
from tests.unit.test_drivers import DRIVERS, exchange, make_app, no_date

TARGETS = [b"/a.txt", b"/a.txt?v=1", b"/a.txt?v=2#f", b"/a.txt#frag", b"/big.bin",
           b"/mid.bin", b"/%61.txt", b"/A.txt", b"/dir", b"/dir/", b"//a.txt",
           b"/a.txt/", b"http://x/a.txt", b"http://x/a.txt?q", b"*", b"/.hidden",
           b"/page.html", b"/page.html?v=1"]
PLAIN = [b"User-Agent: probe/1", b"user-agent:  Mozilla/5.0 (X11)  ", b"Referer: http://r/x",
         b"REFERER:\thttp://r/y\t", b"Accept: */*", b"Cookie: a=1; b=2",
         b"Connection: close", b"connection: keep-alive", b"Connection: Keep-Alive, foo",
         b"Connection:", b"Accept-Encoding: gzip, br", b"X-Host: elsewhere",
         b"Sec-Fetch-Mode: navigate", b"Priority: u=0, i", b"Hostx: y",
         # page.html has a .gz sidecar: negotiated (docs/compression.md)
         b"Accept-Encoding: gzip", b"accept-encoding:  br;q=0, GZIP ", b"Accept-Encoding:",
         b"Accept-Encoding: identity;q=0", b"Accept-Encoding: br"]
# Fields the cached path leaves to the full path.
OTHER = [b"Content-Length: 0", b"Content-Length: 3", b"Transfer-Encoding: chunked",
         b"Expect: 100-continue", b"Range: bytes=0-1", b"Range: bytes=-3",
         b"If-Range: \"x\"", b"If-Match: *", b"If-Unmodified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
         b"Upgrade: websocket", b"X: a\r\n b", b"Bad Field: y", b"X: a\x01b",
         b"Host: second", b"Content-Length: 1, 1"]
HOSTS = [b"Host: x", b"host: 127.0.0.1:8080", b"HOST:\t[::1]:80", b"Host: bad host",
         b"Host:", b"Host: a b  ", None]


@pytest.fixture
def docroot(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    (root / "mid.bin").write_bytes(b"m" * 20000)            # in memory, sent by gather
    (root / "big.bin").write_bytes(bytes(range(256)) * 400)   # 100 KiB, open descriptor
    (root / "dir").mkdir()
    (root / ".hidden").write_text("dot\n")
    (root / "page.html").write_bytes(b"<p>compressible</p>\n" * 100)
    (root / "page.html.gz").write_bytes(gzip.compress(b"<p>compressible</p>\n" * 100))
    return root


class Log:
    def __init__(self):
        self.lines = []

    def log(self, *fields):
        self.lines.append(fields)


def pair(docroot):
    """The App as configured and one with the shortcuts off, each with a log."""
    fast, full = (make_app(docroot, "--cache-valid", "3600", "--cache-file-max", "32768")
                  for _ in range(2))
    # Off where the drivers read them: the site's flags (the cycle) and the
    # App's (a new connection's target_path_ok).  The App's fast_path_ok
    # alone left the remembered-head and scanned paths on.
    full.fast_path_ok = full.target_path_ok = False
    full.default_site.fast_path_ok = full.default_site.target_path_ok = False
    for app in (fast, full):
        app.access_log = Log()
    return fast, full


def validators(app, driver):
    out, _ = exchange(app, driver, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    head = out.partition(b"\r\n\r\n")[0].decode()
    fields = dict(line.split(": ", 1) for line in head.split("\r\n")[1:])
    return fields["ETag"].encode(), fields["Last-Modified"].encode()


def conditionals(etag, modified):
    weak = b"W/" + etag
    return [b"If-None-Match: " + etag, b"if-none-match:  " + etag + b"  ", b"If-None-Match: *",
            b"If-None-Match: " + weak, b"If-None-Match: \"other\"",
            b"If-None-Match: \"other\", " + etag, b"If-None-Match: garbage",
            b"If-None-Match:", b"If-Modified-Since: " + modified,
            b"If-Modified-Since: " + modified.lower(),
            b"If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT",
            b"If-Modified-Since: Fri, 31 Dec 2100 23:59:59 GMT",
            b"If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT",
            b"If-Modified-Since: not a date", b"IF-MODIFIED-SINCE:\t" + modified + b"\t"]


def random_head(rng, conds):
    method = rng.choice([b"GET"] * 6 + [b"HEAD", b"HEAD", b"POST", b"OPTIONS"])
    version = rng.choice([b"HTTP/1.1"] * 6 + [b"HTTP/1.0", b"HTTP/1.0", b"HTTP/2.0"])
    fields = rng.sample(PLAIN, rng.randint(0, 5))
    host = rng.choice(HOSTS)
    if host is not None:
        fields.insert(rng.randint(0, len(fields)), host)
    for _ in range(rng.choice([0, 0, 1, 1, 2])):
        fields.insert(rng.randint(0, len(fields)), rng.choice(conds))
    if rng.random() < 0.15:
        fields.insert(rng.randint(0, len(fields)), rng.choice(OTHER))
    lead = b"\r\n" if rng.random() < 0.05 else b""
    line = b" ".join((method, rng.choice(TARGETS), version))
    return lead + b"\r\n".join([line] + fields) + b"\r\n\r\n"


def same_answers(fast, full, driver, data, pieces=1):
    got = exchange(fast, driver, data, pieces=pieces)[0]
    want = exchange(full, driver, data, pieces=pieces)[0]
    assert no_date(got) == no_date(want), data


@pytest.mark.parametrize("driver", DRIVERS)
def test_scanned_heads_answer_as_the_full_path(docroot, driver, monkeypatch):
    fast, full = pair(docroot)
    tags = validators(fast, driver)
    assert validators(full, driver) == tags
    conds = conditionals(*tags)
    for target in TARGETS:   # each target served once: the cache knows them
        for app in (fast, full):
            exchange(app, driver, b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    answered = []
    scan = H1Protocol._answer_scanned

    def counting(self, head):
        done = scan(self, head)
        answered.append(done)
        return done
    monkeypatch.setattr(H1Protocol, "_answer_scanned", counting)
    rng = random.Random(12)
    for _ in range(800):
        same_answers(fast, full, driver, random_head(rng, conds))
    # Several requests on one connection, each its own read or all in one.
    for _ in range(60):
        data = b"".join(random_head(rng, conds) for _ in range(rng.randint(2, 6)))
        same_answers(fast, full, driver, data, pieces=rng.choice([1, 3]))
    assert fast.access_log.lines == full.access_log.lines
    assert fast.stats.status_counts == full.stats.status_counts
    assert fast.stats.bytes_sent == full.stats.bytes_sent
    assert sum(answered) > 100, "the shortcut was hardly taken"
    assert {s for s in fast.stats.status_counts} >= {200, 304, 400, 404, 505}


@pytest.mark.parametrize("driver", DRIVERS)
def test_limits_hold_for_scanned_heads(docroot, driver):
    """Field count and size at their limits and one past: the same answers
    (431 past them) whether or not the head was scanned."""
    fast, full = pair(docroot)
    for app in (fast, full):
        exchange(app, driver, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n")
    for n in (98, 99, 100, 101, 150):
        fields = b"".join(b"X-%d: v\r\n" % i for i in range(n))
        same_answers(fast, full, driver, b"GET /a.txt HTTP/1.1\r\nHost: x\r\n" + fields + b"\r\n")
    for size in (8100, 8150, 8190, 8191, 9000):
        value = b"v" * (size - len(b"Cookie") )
        same_answers(fast, full, driver,
                     b"GET /a.txt HTTP/1.1\r\nHost: x\r\nCookie: " + value + b"\r\n\r\n")
    long_target = b"/a.txt?" + b"q" * 8200
    same_answers(fast, full, driver, b"GET " + long_target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert 431 in full.stats.status_counts and 200 in full.stats.status_counts
    assert fast.access_log.lines == full.access_log.lines


def test_queries_do_not_fill_the_target_table(docroot):
    """by_target is keyed by an origin-form target's path: a client that
    invents a new query for every request adds nothing to it."""
    fast, _ = pair(docroot)
    for i in range(3000):
        out, _ = exchange(fast, "loop", b"GET /a.txt?n=%d HTTP/1.1\r\nHost: x\r\n\r\n" % i)
        assert out.endswith(b"hello\n")
    assert list(fast.static.by_target.data) == [b"/a.txt"]


def test_a_file_just_loaded_is_remembered_by_its_target(docroot):
    """The request that loads a file (a miss, through the handler) leaves
    its target in by_target as the next plain request would, so that next
    one takes the quickest path at once; a 404, a conditional request or a
    Range request leaves nothing, as before."""
    fast, full = pair(docroot)
    for data in (b"GET /nope.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n"):
        same_answers(fast, full, "loop", data)
    assert not fast.static.by_target
    fast.static.cache.clear()
    same_answers(fast, full, "loop", b"GET /a.txt?v=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert list(fast.static.by_target.data) == [b"/a.txt"]
    scanned = []
    answer = H1Protocol._answer_scanned

    def spy(self, head):
        done = answer(self, head)
        if self.app is fast:
            scanned.append(done)
        return done
    H1Protocol._answer_scanned = spy
    try:
        same_answers(fast, full, "loop", b"GET /a.txt HTTP/1.1\r\nHost: x\r\nCookie: c=2\r\n\r\n")
    finally:
        H1Protocol._answer_scanned = answer
    assert scanned == [True], "the second request took the full path"
    assert fast.access_log.lines == full.access_log.lines


def test_heads_a_client_invents_stay_bounded(docroot):
    """Remembered shapes (``known_shapes``) and exact heads (``known_heads``)
    are bounded however many distinct heads a client invents; each is kept
    on its second sight only, and only an answer from the cache is
    remembered: errors, misses and ranges never are.  Heads that differ
    only in their target and cookie take one shape."""
    app = make_app(docroot, "--cache-entries", "10", "--cache-valid", "3600")
    static = app.static
    limit = static.target_memory
    for i in range(limit + 300):
        exchange(app, "loop", b"GET /a.txt?q=%d HTTP/1.1\r\nHost: x\r\nX-N: %d\r\n\r\n" % (i, i))
        assert len(static.heads_seen) <= limit
    assert not static.known_shapes      # each shape came once: none is kept
    assert len(static.by_target) == 1
    for i in range(limit + 300):        # each four times: kept, up to the bound
        head = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nUser-Agent: n=%d\r\n\r\n" % i
        for _ in range(4):     # the shape from the second, the bytes from the fourth
            exchange(app, "loop", head)
        assert len(static.known_shapes) <= limit and len(static.known_heads) <= limit
    assert static.known_shapes and static.known_heads
    static.known_shapes.clear()
    static.known_heads.clear()
    for i in range(limit + 300):        # a new query and cookie each time: one shape
        exchange(app, "loop", b"GET /a.txt?v=%d HTTP/1.1\r\nHost: x\r\nCookie: n=%d\r\n\r\n"
                 % (i, i))
    assert len(static.known_shapes) == 1 and not static.known_heads
    static.known_shapes.clear()
    for junk in (b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /a.txt HTTP/1.1\r\nHost: x\r\nIf-Match: *\r\n\r\n",
                 b"GET /a.txt HTTP/1.1\r\nHost: bad host\r\n\r\n",
                 b"GET /a.txt HTTP/1.1\r\n\r\n",
                 b"POST /a.txt HTTP/1.1\r\nHost: x\r\n\r\n",
                 b"GET /a.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=0-1\r\n\r\n"):
        for _ in range(3):
            exchange(app, "loop", junk)
    assert not static.known_shapes and not static.known_heads


# -- any head (hypothesis) -------------------------------------------------------

_NAMES = ["Host", "host", "HOST", "Connection", "User-Agent", "Referer", "If-None-Match",
          "If-Modified-Since", "if-match", "Range", "Content-Length", "Transfer-Encoding",
          "Upgrade", "Expect", "Cookie", "X-Host", "Hostx", "Bad Name", "", "Host ", " Host"]
_VALUE_BYTES = " \t\r\n\x00\x7f\xff:,;=\"*W/-01x"
_values = st.text(alphabet=st.one_of(st.sampled_from(_VALUE_BYTES),
                                     st.characters(min_codepoint=0x20, max_codepoint=0xff)),
                  max_size=40)


@pytest.fixture(scope="module")
def apps(tmp_path_factory):
    root = tmp_path_factory.mktemp("scanned") / "root"
    root.mkdir()
    (root / "a.txt").write_text("hello\n")
    fast, full = pair(root)
    tags = validators(fast, "loop")
    assert validators(full, "loop") == tags
    return fast, full, tags


@given(method=st.sampled_from(["GET", "HEAD", "GET", "POST"]),
       target=st.sampled_from(["/a.txt", "/a.txt?q", "/b.txt", "/a.txt#x"]),
       version=st.sampled_from(["HTTP/1.1", "HTTP/1.0", "HTTP/1.1"]),
       fields=st.lists(st.tuples(st.one_of(st.sampled_from(_NAMES),
                                           st.text(st.characters(max_codepoint=0xff), max_size=6)),
                                 st.one_of(_values, st.sampled_from(["x", "tag", "date"]))),
                       max_size=6),
       host=st.booleans())
def test_any_head_is_answered_as_the_full_path(apps, method, target, version, fields, host):
    """Arbitrary field names and values (control bytes, obs-fold, bare CR or
    LF, repeated and missing Host...): same bytes, log lines and counts."""
    fast, full, (etag, modified) = apps
    lines = [f"{method} {target} {version}"] + (["Host: x"] if host else [])
    for name, value in fields:
        value = {"tag": etag.decode(), "date": modified.decode()}.get(value, value)
        lines.append(f"{name}: {value}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    logged = len(fast.access_log.lines), len(full.access_log.lines)
    same_answers(fast, full, "loop", head)
    assert fast.access_log.lines[logged[0]:] == full.access_log.lines[logged[1]:]
    assert fast.stats.status_counts == full.stats.status_counts


# -- remembered heads that differ in a cookie -----------------------------------

def test_known_key_cuts_the_target_and_a_cookie_value():
    base = b"GET %s HTTP/1.1\r\nHost: x\r\nCookie: %s\r\nUser-Agent: u\r\n\r\n"
    key, path, target = known_key(base % (b"/a.txt", b"a=1"))
    assert key == b"GET \0 HTTP/1.1\r\nHost: x\r\nCookie:\0\r\nUser-Agent: u\r\n\r\n"
    assert path == target == b"/a.txt"
    for other in ((b"/a.txt?v=2", b"b=2; c=\t3"), (b"/", b""), (b"/%61/b;c?x=/?&y", b" a ")):
        assert known_key(base % other) == (key, other[0].partition(b"?")[0], other[0])
    # A Cookie value with any byte outside printable ASCII and HTAB stays.
    for odd in (b"a\x7f", b"\x80", b"a\rb", b"a\nb", b"\x01", b"\xff"):
        assert known_key(base % (b"/a.txt", odd))[0] == \
            b"GET \0 HTTP/1.1\r\nHost: x\r\nCookie: " + odd + b"\r\nUser-Agent: u\r\n\r\n"
    # No shape: a NUL anywhere, a target that is not a plain origin-form one.
    assert known_key(base % (b"/a.txt", b"a\0")) is None
    for target in (b"*", b"http://x/a.txt", b"/a#f", b"/a\x80", b"/a\"b", b"/a<", b"/a\\",
                   b"/a{", b"/a^", b"/a`", b"/a|", b"a.txt", b""):
        assert known_key(base % (target, b"a=1")) is None, target
    assert known_key(b"GET /a.txt\r\n\r\n") is None
    plain = b"GET /a.txt HTTP/1.1\r\nHost: x\r\ncookie: a=1\r\n\r\n"
    assert known_key(plain)[0] == plain.replace(b"/a.txt", b"\0")   # only "Cookie:"
    two = b"GET / HTTP/1.1\r\nCookie: a\r\nCookie: b\r\n\r\n"
    assert known_key(two)[0] == b"GET \0 HTTP/1.1\r\nCookie:\0\r\nCookie: b\r\n\r\n"
    odd = b"GET / HTTP/1.1\r\nCookie: \x01\r\nCookie: b\r\n\r\n"   # the first printable one
    assert known_key(odd)[0] == b"GET \0 HTTP/1.1\r\nCookie: \x01\r\nCookie:\0\r\n\r\n"
    # Elsewhere the bytes must be the same: another field, method or order.
    assert known_key(base.replace(b"u\r", b"v\r") % (b"/a.txt", b"a=1"))[0] != key
    assert known_key(b"HEAD" + (base % (b"/a.txt", b"a=1"))[3:])[0] != key


def test_the_holes_admit_only_bytes_llhttp_takes_there():
    """Every byte that leaves a head in a valid head's shape, anywhere in
    the path, the query or the Cookie value, is one llhttp (strict)
    accepts there, and the target llhttp reads is the hole's: a head of a
    remembered shape parses as the remembered one did."""
    base = b"GET %s HTTP/1.1\r\nHost: x\r\nCookie: %s\r\n\r\n"
    shape = known_key(base % (b"/a", b"c"))[0]
    taken = 0
    for byte in range(256):
        for target, cookie in ((b"/a%cb" % byte, b"c"), (b"/a?q%cb" % byte, b"c"),
                               (b"/a", b"c%cd" % byte), (b"/a", b"%c" % byte)):
            head = base % (target, cookie)
            found = known_key(head)
            if found is None or found[0] != shape:
                continue
            urls = []

            class Target:
                def on_url(self, url):
                    urls.append(url)
            httptools.HttpRequestParser(Target()).feed_data(head)
            assert urls == [target] == [found[2]], head
            taken += 1
    assert taken > 4 * 70


COOKIES = [b"a=1", b"", b" a=2 ", b"sid=\t9", b"x" * 1500, b"a=\x7f", b"a=\x80\xff",
           b"a=\x01", b"a\rb", b"a\nb", b"a\x00b", b"a\r\n b", b"a\r\nX-Other: y",
           b"a=1\r\nCookie: b=2", b"a=1\r\nContent-Length: 3", b"a=1\r\nHost: other"]
SHAPE_TARGETS = [b"/a.txt", b"/a.txt?v=%d", b"/mid.bin", b"/big.bin", b"/page.html", b"/missing",
                 b"/dir", b"/dir/", b"/%61.txt", b"/a.txt#f", b"//a.txt", b"/.hidden", b"/a.txt/",
                 b"http://x/a.txt", b"/a.txt?q=\"", b"/a.txt?x=/?&y=%zz", b"/a.txt?\x7f",
                 b"/a.txt\x00", b"/a b", b"/A.txt", b"/a.txt;p"]


def shaped_heads(etag, modified):
    """Heads as browsers send them, {target} and {cookie} where those go."""
    agent = b"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    out = []
    for line, extra in ((b"GET {target} HTTP/1.1", b""),
                        (b"HEAD {target} HTTP/1.1", b"Referer: http://r/\r\n"),
                        (b"GET {target} HTTP/1.0", b"Connection: keep-alive\r\n"),
                        (b"GET {target} HTTP/1.1", b"Connection: close\r\n"),
                        (b"GET {target} HTTP/1.1", b"If-None-Match: " + etag + b"\r\n"),
                        (b"GET {target} HTTP/1.1", b"If-Modified-Since: " + modified + b"\r\n"),
                        # RFC 850 and asctime dates: the first is read against
                        # the current year, so its verdict is never kept
                        (b"GET {target} HTTP/1.1",
                         b"If-Modified-Since: Sunday, 06-Nov-94 08:49:37 GMT\r\n"),
                        (b"GET {target} HTTP/1.1", b"If-Modified-Since: Sun Nov  6 08:49:37 2094\r\n"),
                        (b"GET {target} HTTP/1.1",
                         b"If-None-Match: " + etag + b"\r\nIf-Modified-Since: " + modified + b"\r\n"),
                        (b"GET {target} HTTP/1.1", b"Range: bytes=0-1\r\n")):
        out.append(line + b"\r\nHost: x\r\n" + agent + b"\r\nCookie: {cookie}\r\n"
                   + extra + b"Accept-Encoding: gzip\r\n\r\n")
        out.append(line + b"\r\nHost: x\r\n" + extra + agent + b"\r\nCookie: {cookie}\r\n\r\n")
    return out


def fill(head, target, cookie):
    return head.replace(b"{target}", target).replace(b"{cookie}", cookie)


def test_heads_of_a_remembered_shape_answer_as_the_full_path(docroot, monkeypatch):
    """Heads remembered by their shape (``known_key``) and sent again with
    other targets and Cookie values, good and bad, get the full path's
    answers, log lines and counts, and most good ones skip the parser."""
    fast, full = pair(docroot)
    etag, modified = validators(fast, "loop")
    assert validators(full, "loop") == (etag, modified)
    for target in TARGETS:
        for app in (fast, full):
            exchange(app, "loop", b"GET " + target + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    known = []
    answer_known = Connection._answer_known

    def counting(self, *args):
        done = answer_known(self, *args)
        assert self.app is fast, "the App without shortcuts answered a remembered head"
        known.append(done)
        return done
    monkeypatch.setattr(Connection, "_answer_known", counting)
    heads = shaped_heads(etag, modified)
    for head in heads:                  # each shape twice: remembered
        for cookie in (b"n=1", b"n=2"):
            same_answers(fast, full, "loop", fill(head, b"/a.txt", cookie))
    assert fast.static.known_shapes
    rng = random.Random(5)
    for i in range(800):
        target = rng.choice(SHAPE_TARGETS)
        target = target % i if b"%d" in target else target
        cookie = rng.choice(COOKIES + [b"n=%d" % i] * 8)
        same_answers(fast, full, "loop", fill(rng.choice(heads), target, cookie))
    assert fast.access_log.lines == full.access_log.lines
    assert fast.stats.status_counts == full.stats.status_counts
    assert fast.stats.bytes_sent == full.stats.bytes_sent
    assert sum(known) > 100, "remembered shapes were hardly used"
    # Revalidations kept their verdicts (KnownHead.judged_etag) across
    # targets and cookies, but for the RFC 850 date's, weighed every time.
    weighed = [k for k in fast.static.known_shapes.data.values() if k.validators]
    assert any(k.judged_etag is not None for k in weighed)
    assert any(not k.steady and k.judged_etag is None for k in weighed)
    assert {s for s in fast.stats.status_counts} >= {200, 206, 301, 304, 400, 404}


def test_a_remembered_revalidation_sees_an_edit(docroot):
    """A revalidation answered 304 from a remembered head gets the new file
    (200) once the file changed, and 304 again for the new validators."""
    app = make_app(docroot, "--cache-valid", "3600")
    etag, modified = validators(app, "loop")
    validators(app, "loop")             # from the cache: by_target knows /a.txt
    head = b"GET /a.txt HTTP/1.1\r\nHost: x\r\nCookie: n=%d\r\nIf-None-Match: " + etag + b"\r\n\r\n"
    for i in range(3):
        out, _ = exchange(app, "loop", head % i)
        assert out.startswith(b"HTTP/1.1 304 ")
    assert any(k.validators for k in app.static.known_shapes.data.values())
    (docroot / "a.txt").write_text("edited, and longer\n")
    app.static.cache.valid = 0          # --cache-valid has run out
    out, _ = exchange(app, "loop", head % 9)
    assert out.startswith(b"HTTP/1.1 200 ") and out.endswith(b"edited, and longer\n")
    app.static.cache.valid = 3600
    new_etag, _ = validators(app, "loop")
    assert new_etag != etag
    for i in range(3):
        out, _ = exchange(app, "loop", head.replace(etag, new_etag) % i)
        assert out.startswith(b"HTTP/1.1 304 ")
