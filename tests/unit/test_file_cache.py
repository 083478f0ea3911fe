"""The FileCache's bounds: entries, content bytes, open descriptors."""
import os

from flashplug.cache import FileCache, load_entry
from flashplug.stats import Stats


def make(tmp_path, name, size):
    path = tmp_path / name
    path.write_bytes(b"x" * size)
    return str(path)


def test_bounded_in_entries_bytes_and_open_files(tmp_path):
    cache = FileCache(max_entries=3, max_bytes=250, valid=1.0, stats=Stats(), max_open=2)
    small = [load_entry(make(tmp_path, f"s{i}", 100), small_max=200) for i in range(3)]
    for i, entry in enumerate(small):
        cache.put(f"/s{i}", entry)
    assert cache.bytes <= 250 and len(cache) == 2       # bytes evicted the oldest
    assert small[0].dead and not small[2].dead

    big = [load_entry(make(tmp_path, f"b{i}", 1000), small_max=200) for i in range(3)]
    fds = [e.fd for e in big]
    for i, entry in enumerate(big):
        cache.put(f"/b{i}", entry)
    assert cache.open_files == 2
    assert big[0].dead and big[0].fd is None             # its descriptor is closed
    try:
        os.fstat(fds[0])
        reused = True                                    # the number may be reused
    except OSError:
        reused = False
    assert reused or big[0].fd is None


def test_an_entry_in_use_closes_after_its_last_send(tmp_path):
    cache = FileCache(max_entries=1, max_bytes=100, valid=1.0, stats=Stats())
    entry = load_entry(make(tmp_path, "big", 1000), small_max=10)
    cache.put("/big", entry)
    entry.retain()                                        # a sendfile in progress
    cache.put("/other", load_entry(make(tmp_path, "other", 1000), small_max=10))
    assert entry.dead and entry.fd is not None            # still open for the send
    entry.release()
    assert entry.fd is None


def test_entries_served_lately_are_swept_for_a_while(tmp_path):
    cache = FileCache(max_entries=10, max_bytes=1000, valid=1.0, stats=Stats())
    recent = cache.recent_sweeps
    assert recent * cache.period >= 1.0 - 1e-9     # about a second of sweeps
    hot = load_entry(make(tmp_path, "hot", 10), small_max=100)
    cold = load_entry(make(tmp_path, "cold", 10), small_max=100)
    cache.put("/hot", hot)
    cache.put("/cold", cold)
    hot.used = True                      # one hit, then none
    now = hot.checked + 0.6              # its trust ends before the next sweep is done: due
    swept = []
    for _ in range(recent + 3):
        swept.append([key for key, _ in cache.due_for_check(now)])
    # Swept at the hit's sweep and the ones after it for about a second,
    # then left alone; the entry never served is never swept.
    assert swept[:recent] == [["/hot"]] * recent
    assert swept[recent + 1:] == [[], []]
    # Not due while its last check is recent, even when just served.
    hot.used = True
    assert cache.due_for_check(hot.checked + 0.1) == []


def test_a_sweep_refreshes_an_entry_before_its_trust_runs_out(tmp_path):
    """Sweeping every period, an entry served all the time is always due at
    some sweep that starts at least half a period before its trust ends."""
    for valid in (0.3, 1.0, 2.0, 5.0):
        cache = FileCache(max_entries=10, max_bytes=1000, valid=valid, stats=Stats())
        entry = load_entry(make(tmp_path, "hot", 10), small_max=100)
        cache.put("/hot", entry)
        checked_at = entry.checked
        sweep = checked_at + 0.37 * cache.period      # any phase
        for _ in range(50):
            entry.used = True
            if cache.due_for_check(sweep):
                assert sweep <= entry.checked + valid - cache.period / 2
                entry.checked = sweep
            assert entry.checked + valid > sweep + cache.period, "stale before the next sweep"
            sweep += cache.period


def test_a_file_is_resolved_without_asking_whether_it_is_a_directory(tmp_path, monkeypatch):
    """resolve opens a file straight away (a directory is told by the open
    descriptor's fstat): one stat less per miss.  A directory named
    without its slash is still redirected, with one a 404, a file
    named with one a 404."""
    import pytest

    import flashplug.static as static
    from flashplug.errors import HTTPError

    make(tmp_path, "a.txt", 10)
    (tmp_path / "dir").mkdir()
    root = str(tmp_path)
    asked = []
    real_isdir = os.path.isdir
    monkeypatch.setattr(static.os.path, "isdir", lambda p: asked.append(p) or real_isdir(p))
    entry = static.resolve(root, root, "/a.txt", ["index.html"], False, 100)
    assert entry.size == 10 and asked == []
    with pytest.raises(static.Redirect):
        static.resolve(root, root, "/dir", ["index.html"], False, 100)
    with pytest.raises(static.Directory):
        static.resolve(root, root, "/dir/", ["index.html"], False, 100)
    for path in ("/a.txt/", "/missing", "/missing/"):
        with pytest.raises(HTTPError) as e:
            static.resolve(root, root, path, ["index.html"], False, 100)
        assert e.value.status == 404, path
