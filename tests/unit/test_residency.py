"""The residency probes agree with the page cache."""
import os

import pytest

from flashplug.residency import CACHESTAT, MINCORE, PAGE


def drop_pages(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


@pytest.mark.skipif(CACHESTAT is None, reason="cachestat(2) needs Linux 6.5 or later")
def test_cachestat_counts_cached_pages(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(16 * PAGE + 100))
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)     # no read-ahead
    try:
        os.pread(fd, 17 * PAGE, 0)
        assert CACHESTAT.cached_pages(fd, 0, 16 * PAGE + 100) == 17
        assert CACHESTAT.cached_pages(fd, 4 * PAGE, 2 * PAGE) == 2
        for _ in range(50):
            drop_pages(path)
            if CACHESTAT.cached_pages(fd, 0, 16 * PAGE + 100) == 0:
                break
        else:
            pytest.skip("the kernel would not drop this file's pages")
        os.pread(fd, PAGE, 8 * PAGE)          # one page back in
        assert CACHESTAT.cached_pages(fd, 0, 16 * PAGE + 100) == 1
        assert CACHESTAT.cached_pages(fd, 8 * PAGE, PAGE) == 1
    finally:
        os.close(fd)
    assert CACHESTAT.cached_pages(fd, 0, PAGE) == -1    # a closed descriptor


@pytest.mark.skipif(MINCORE is None, reason="no mincore here")
def test_mincore_gives_the_resident_prefix(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(os.urandom(16 * PAGE))
    fd = os.open(path, os.O_RDONLY)
    addr = MINCORE.map_file(fd, 16 * PAGE)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)     # no read-ahead
    try:
        for _ in range(50):
            drop_pages(path)
            if MINCORE.resident_prefix(addr, 0, 16 * PAGE) == 0:
                break
        else:
            pytest.skip("the kernel would not drop this file's pages")
        os.pread(fd, 3 * PAGE, 0)
        assert MINCORE.resident_prefix(addr, 0, 16 * PAGE) == 3 * PAGE
        assert MINCORE.resident_prefix(addr, 100, 16 * PAGE - 100) == 3 * PAGE - 100
    finally:
        MINCORE.unmap(addr, 16 * PAGE)
        os.close(fd)
