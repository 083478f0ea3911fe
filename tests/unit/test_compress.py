"""Sidecars, on-the-fly variants and their cache (flashplug.compress), run
synchronously: ``find`` and ``compress_entry`` are what a helper runs."""
import gzip
import os

import brotli
import pytest
import zstandard

import flashplug.cache
from flashplug.cache import FileCache, load_entry, still_fresh, still_fresh_all
from flashplug.compress import (MIN_LENGTH, NOT_SMALLER, Compression, VariantCache,
                                compress_entry, compressible, missing_codings)
from flashplug.helpers import InlineHelpers, run_sync
from flashplug.stats import Stats

TEXT = b"<p>flashplug serves this paragraph again and again</p>\n" * 200


def make(root, name, data=TEXT, mtime=None):
    path = root / name
    path.write_bytes(data)
    if mtime is not None:
        os.utime(path, ns=(mtime, mtime))
    return str(path)


def policy(on_the_fly=True, precompressed=True, cache_bytes=1 << 20, refused=lambda p: False):
    return Compression(on_the_fly, precompressed, VariantCache(cache_bytes), refused)


def test_compressible_types():
    for ctype in ("text/html; charset=utf-8", "application/json", "image/svg+xml",
                  "text/javascript; charset=utf-8", "application/ld+json", "application/wasm",
                  "application/rss+xml"):
        assert compressible(ctype), ctype
    for ctype in ("image/png", "font/woff2", "application/gzip", "video/mp4",
                  "application/octet-stream"):
        assert not compressible(ctype), ctype


def test_a_file_without_sidecars_is_not_negotiated_unless_compress_is_on(tmp_path):
    path = make(tmp_path, "page.html")
    assert load_entry(path, 1 << 20, policy(on_the_fly=False)).variants is None
    entry = load_entry(path, 1 << 20, policy())
    assert list(entry.variants) == ["br", "zstd", "gzip"]       # our preference order
    assert all(v is None for v in entry.variants.values())      # all made on the fly
    assert b"Vary: Accept-Encoding\r\n" in entry.head_tail


def test_small_and_incompressible_files_are_not_compressed(tmp_path):
    assert load_entry(make(tmp_path, "tiny.html", TEXT[:MIN_LENGTH - 1]), 1 << 20,
                      policy()).variants is None
    assert load_entry(make(tmp_path, "photo.png"), 1 << 20, policy()).variants is None
    # Bigger than the variant cache's whole budget: never compressed.
    assert load_entry(make(tmp_path, "big.html"), 1 << 20,
                      policy(cache_bytes=len(TEXT) - 1)).variants is None


def test_sidecars_are_loaded_with_the_originals_type_and_their_own_validators(tmp_path):
    path = make(tmp_path, "page.html", mtime=10**18)
    make(tmp_path, "page.html.br", brotli.compress(TEXT), mtime=10**18 + 5)
    make(tmp_path, "page.html.gz", gzip.compress(TEXT), mtime=10**18 + 5)
    entry = load_entry(path, 1 << 20, policy(on_the_fly=False))
    assert list(entry.variants) == ["br", "gzip"]
    br = entry.variants["br"]
    assert br.coding == "br" and br.vary and br.content_type == entry.content_type
    assert brotli.decompress(br.data) == TEXT
    assert br.etag.endswith('-br"') and br.etag != entry.etag
    assert b"Content-Encoding: br\r\n" in br.head_tail
    assert entry.nbytes == len(TEXT) + br.nbytes + entry.variants["gzip"].nbytes
    # With --compress, zstd (no sidecar) is made on the fly; sidecars stay.
    both = load_entry(path, 1 << 20, policy())
    assert [k for k, v in both.variants.items() if v is None] == ["zstd"]


def test_stale_unsafe_and_odd_sidecars_are_ignored(tmp_path, caplog):
    path = make(tmp_path, "page.html", mtime=10**18)
    make(tmp_path, "page.html.br", brotli.compress(TEXT), mtime=10**18 - 1)   # stale
    os.mkfifo(tmp_path / "page.html.zst")                                       # not a file
    make(tmp_path, "page.html.gz", gzip.compress(TEXT), mtime=10**18)
    refused = {str(tmp_path / "page.html.gz")}
    entry = load_entry(path, 1 << 20, policy(on_the_fly=False, refused=refused.__contains__))
    assert entry.variants is None
    assert "page.html.br is older than page.html" in caplog.text
    # Each name is still watched: making the sidecar again is seen.
    assert [p for p, ident in entry.sidecars if ident is not None] == [
        path + ".br", path + ".zst", path + ".gz"]
    assert still_fresh(entry)
    os.utime(path + ".br", ns=(10**18 + 1, 10**18 + 1))
    assert not still_fresh(entry)


def test_a_sidecar_appearing_or_vanishing_makes_the_entry_stale(tmp_path):
    path = make(tmp_path, "page.html")
    entry = load_entry(path, 1 << 20, policy(on_the_fly=False))
    assert still_fresh(entry)
    make(tmp_path, "page.html.gz", gzip.compress(TEXT))
    assert not still_fresh(entry)
    entry = load_entry(path, 1 << 20, policy(on_the_fly=False))
    assert entry.variants is not None and still_fresh(entry)
    os.unlink(path + ".gz")
    assert not still_fresh(entry)


def _sweep(entries):
    """One sweep's batch as the loop applies it (StaticFiles.revalidate_ahead)."""
    results = still_fresh_all(entries)
    for entry, (fresh, vouch) in zip(entries, results):
        if fresh:
            entry.absent_in = vouch
    return [fresh for fresh, _ in results]


def _counting_stats(monkeypatch):
    paths = []
    real = os.stat

    def stat(path, *args, **kwargs):
        paths.append(os.fspath(path))
        return real(path, *args, **kwargs)
    monkeypatch.setattr(flashplug.cache.os, "stat", stat)
    return paths


def test_a_settled_folder_vouches_for_absent_sidecars_in_a_sweep(tmp_path, monkeypatch):
    """Once a sweep has found a file's three sidecars absent in a folder
    that has not changed lately, the next sweep stats the file and the
    folder (once for the batch), not the sidecars; a sidecar made then
    changes the folder, and the entry is stale at once."""
    monkeypatch.setattr(flashplug.cache, "SETTLED_NS", 50_000_000)
    paths = [make(tmp_path, f"p{i}.html") for i in range(3)]
    entries = [load_entry(p, 1 << 20, policy(on_the_fly=False)) for p in paths]
    os.utime(tmp_path, ns=(0, 0))    # (mtime only: ctime still moves)
    import time
    time.sleep(0.1)
    assert _sweep(entries) == [True] * 3          # the sidecars are stat'ed, vouched for
    assert all(e.absent_in is not None for e in entries)
    stats = _counting_stats(monkeypatch)
    assert _sweep(entries) == [True] * 3
    assert sorted(stats) == sorted(paths + [str(tmp_path)])
    make(tmp_path, "p1.html.gz", gzip.compress(TEXT))
    assert _sweep(entries) == [True, False, True]
    assert not still_fresh(entries[1])


def test_a_folder_changed_lately_vouches_for_nothing(tmp_path, monkeypatch):
    """A folder whose ctime is younger than SETTLED_NS might change again in
    the same clock tick without its ctime moving: every sidecar is stat'ed."""
    monkeypatch.setattr(flashplug.cache, "SETTLED_NS", 3600 * 10**9)
    path = make(tmp_path, "page.html")
    entry = load_entry(path, 1 << 20, policy(on_the_fly=False))
    assert _sweep([entry]) == [True] and entry.absent_in is None
    stats = _counting_stats(monkeypatch)
    assert _sweep([entry]) == [True]
    assert sorted(stats) == sorted([path, str(tmp_path)] + [path + ext for ext in (".br", ".zst", ".gz")])


def test_no_sidecar_is_looked_for_with_precompressed_off(tmp_path):
    path = make(tmp_path, "page.html")
    make(tmp_path, "page.html.gz", gzip.compress(TEXT))
    entry = load_entry(path, 1 << 20, policy(on_the_fly=False, precompressed=False))
    assert entry.variants is None and entry.sidecars == ()


def test_large_sidecars_hold_descriptors_the_cache_counts(tmp_path):
    path = make(tmp_path, "page.html", mtime=10**18)
    make(tmp_path, "page.html.gz", gzip.compress(TEXT, 0), mtime=10**18)
    entry = load_entry(path, 100, policy(on_the_fly=False))    # both too big for memory
    assert entry.nfds == 2
    cache = FileCache(10, 1 << 20, 1.0, Stats(), max_open=3)
    cache.put("/page.html", entry)
    assert cache.open_files == 2
    cache.remove("/page.html")
    assert cache.open_files == 0
    assert entry.fd is None and entry.variants["gzip"].fd is None     # both closed


@pytest.mark.parametrize("coding, decode", [
    ("gzip", gzip.decompress), ("br", brotli.decompress),
    ("zstd", lambda b: zstandard.ZstdDecompressor().decompress(b)),
])
@pytest.mark.parametrize("small_max", [1 << 20, 100])   # in memory, or read by name
def test_compress_entry(tmp_path, coding, decode, small_max):
    entry = load_entry(make(tmp_path, "page.html"), small_max, policy())
    variant = compress_entry(entry, coding)
    assert decode(variant.data) == TEXT
    assert variant.size == len(variant.data) < len(TEXT)
    assert variant.coding == coding and variant.ident == entry.ident
    assert variant.etag == "W/" + entry.etag[:-1] + f'-{coding}"'     # weak: made on the fly
    assert variant.last_modified == entry.last_modified


def test_compress_entry_gives_up_on_incompressible_or_changed_files(tmp_path):
    noise = load_entry(make(tmp_path, "noise.txt", os.urandom(4096)), 1 << 20, policy())
    assert compress_entry(noise, "gzip") is NOT_SMALLER
    path = make(tmp_path, "page.html")
    entry = load_entry(path, 100, policy())
    with open(path, "ab") as f:
        f.write(b"more")
    assert compress_entry(entry, "gzip") is None


def test_pick_and_make_compress_once_and_keep_the_result(tmp_path, monkeypatch):
    comp = policy()
    entry = load_entry(make(tmp_path, "page.html"), 1 << 20, comp)
    assert comp.pick("gzip", entry) == "gzip"             # still to be made
    assert comp.pick(None, entry) is entry                 # identity
    assert comp.pick("identity;q=0, compress", entry) is None
    calls = []
    import flashplug.compress as mod
    real = mod.compress_entry
    monkeypatch.setattr(mod, "compress_entry", lambda *a: calls.append(a) or real(*a))
    comp.stats = Stats()
    made = run_sync(comp.make(InlineHelpers(), entry, "gzip"))
    assert made.coding == "gzip" and comp.pick("gzip", entry) is made
    assert len(calls) == 1 and comp.stats.compressions == 1


def test_variant_cache_is_bounded_lru(tmp_path):
    entry = load_entry(make(tmp_path, "page.html"), 1 << 20, policy())
    one = compress_entry(entry, "gzip")
    cost = VariantCache.cost(one)
    cache = VariantCache(2 * cost + VariantCache.cost(NOT_SMALLER))
    cache.put(("a",), one)
    cache.put(("b",), one)
    cache.put(("m",), NOT_SMALLER)
    assert cache.get(("a",)) is one          # "a" is now the most recent
    cache.put(("c",), one)                   # "b" goes
    assert cache.get(("b",)) is None and cache.get(("a",)) is one
    assert cache.bytes <= cache.max_bytes
    VariantCache(cost - 1).put(("x",), one)  # bigger than the budget: not kept


def test_missing_packages_are_named_once(monkeypatch):
    import flashplug.compress as mod
    monkeypatch.setattr(mod, "COMPRESSORS", {"gzip": mod._gzip})
    assert mod.missing_codings() == [
        "--compress: br, zstd off (brotli and zstandard not installed); gzip only. "
        "Install them with: pip install 'flashplug[compress]'"]
    assert Compression(True, True, VariantCache(1), lambda p: False).codings == ("gzip",)
    monkeypatch.undo()
    assert missing_codings() == []
