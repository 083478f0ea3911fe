"""The sweep's stats in a child process (``flashplug.freshness``) against
the same stats in the caller, over many files and every kind of change."""
import os
import random
import signal

import pytest

from flashplug import freshness
from flashplug.cache import load_entry, still_fresh
from flashplug.freshness import StatProcess


class Sidecarred:
    """An entry as compression loads one: with the sidecars it looked for."""

    def __init__(self, entry, sidecars):
        self.fspath, self.ident, self.sidecars = entry.fspath, entry.ident, sidecars


@pytest.fixture
def files(tmp_path):
    """600 cached files, then a random fifth of them changed in every way a
    sweep must notice, and some sidecars appearing, vanishing or changing."""
    rng = random.Random(7)
    entries = []
    for i in range(600):
        name = f"f{i}.txt" if i % 50 else f"f{i}-\udcff.txt"     # a name that is not UTF-8
        path = tmp_path / name
        path.write_bytes(b"x" * (i % 40))
        entry = load_entry(str(path), small_max=64)
        if i % 7 == 0:
            side = tmp_path / (name + ".gz")
            if i % 14 == 0:
                side.write_bytes(b"gz")
                entry = Sidecarred(entry, ((str(side), freshness.ident_of(os.stat(side))),))
            else:
                entry = Sidecarred(entry, ((str(side), None),))
        entries.append(entry)
    for entry in rng.sample(entries, 120):
        how = rng.randrange(6)
        if how == 0:
            os.utime(entry.fspath, ns=(0, entry.ident[3] + 1))         # touched
        elif how == 1:
            with open(entry.fspath, "ab") as f:                          # grown
                f.write(b"y")
        elif how == 2:
            os.unlink(entry.fspath)                                      # deleted
        elif how == 3:
            tmp = entry.fspath + ".new"                                  # replaced
            with open(tmp, "wb") as f:
                f.write(b"x" * entry.ident[2])
            os.utime(tmp, ns=(0, entry.ident[3]))
            os.rename(tmp, entry.fspath)
        elif entry.sidecars:
            side, was = entry.sidecars[0]
            if was is None:
                open(side, "wb").close()                                 # a sidecar appears
            else:
                os.unlink(side)                                          # a sidecar vanishes
    return entries


def test_the_child_answers_as_the_caller_would(files):
    want = bytes(still_fresh(e) for e in files)
    assert 0 < sum(want) < len(want)
    stats = StatProcess()
    try:
        for _ in range(3):
            assert stats.unchanged_all(files) == want
        assert stats._proc is not None and stats._proc.poll() is None, "no child answered"
        assert stats.unchanged_all([]) == b""
    finally:
        stats.close()


def test_a_dead_child_is_replaced_and_then_given_up(files):
    want = bytes(still_fresh(e) for e in files)
    stats = StatProcess()
    try:
        for start in range(1, freshness.MAX_STARTS + 2):
            assert stats.unchanged_all(files) == want
            child = stats._proc
            if start <= freshness.MAX_STARTS:
                assert child is not None and stats._starts == start
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
                # The batch the death cuts off is stat'ed in the caller.
                assert stats.unchanged_all(files) == want
                assert stats._proc is None
        assert stats._proc is None and stats._starts == freshness.MAX_STARTS
    finally:
        stats.close()


def test_close_ends_the_child(files):
    stats = StatProcess()
    stats.unchanged_all(files[:10])
    child = stats._proc
    stats.close()
    assert child.poll() is not None
    assert stats.unchanged_all(files) == bytes(still_fresh(e) for e in files)
    assert stats._proc is None, "no child after close"
