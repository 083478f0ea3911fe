"""autoindex scanning: what a listing shows and hides (real files, no sockets)."""
import os

import pytest

from flashplug_plugins.autoindex import listing as L


@pytest.fixture
def root(tmp_path):
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "a.txt").write_bytes(b"hello")
    (root / "sub" / "inner").mkdir()
    (root / "sub" / ".hidden").write_text("x")
    (root / "sub" / "old.bak").write_text("x")
    (root / "sub" / "notes~").write_text("x")
    (root / "secret.txt").write_text("x")
    (tmp_path / "outside.txt").write_text("outside")
    return root


def policy(root, **kw):
    return L.Policy(os.path.realpath(root), **kw)


def names(lst):
    return sorted(e.name for e in lst.entries)


def test_types_sizes_and_times(root):
    lst = L.scan(str(root / "sub"), policy(root))
    by = {e.name: e for e in lst.entries}
    assert by["a.txt"].kind == "file" and by["a.txt"].size == 5
    assert by["inner"].kind == "directory" and by["inner"].size is None
    assert by["a.txt"].mtime_ns == os.stat(root / "sub" / "a.txt").st_mtime_ns
    assert lst.mtime_ns == os.stat(root / "sub").st_mtime_ns


def test_other_kind(root):
    os.mkfifo(root / "sub" / "pipe")
    by = {e.name: e for e in L.scan(str(root / "sub"), policy(root)).entries}
    assert by["pipe"].kind == "other" and by["pipe"].size is None


def test_dotfiles_hidden_unless_shown(root):
    assert ".hidden" not in names(L.scan(str(root / "sub"), policy(root)))
    assert ".hidden" in names(L.scan(str(root / "sub"), policy(root, show_dotfiles=True)))


def test_ignore_patterns(root):
    lst = L.scan(str(root / "sub"), policy(root, ignore=("*.bak", "*~")))
    assert names(lst) == ["a.txt", "inner"]


def test_symlinks_leaving_docroot_are_not_listed(root, tmp_path):
    sub = root / "sub"
    os.symlink(tmp_path / "outside.txt", sub / "out-file")
    os.symlink(tmp_path, sub / "out-dir")
    os.symlink("../../outside.txt", sub / "out-relative")
    os.symlink(root / "secret.txt", sub / "in-file")
    os.symlink("inner", sub / "in-dir")
    os.symlink("nowhere", sub / "broken")
    shown = names(L.scan(str(sub), policy(root)))
    assert "out-file" not in shown and "out-dir" not in shown and "out-relative" not in shown
    assert "broken" not in shown
    by = {e.name: e for e in L.scan(str(sub), policy(root)).entries}
    assert by["in-file"].kind == "file" and by["in-dir"].kind == "directory"
    # --follow-symlinks: the server follows them, so the listing shows them.
    followed = names(L.scan(str(sub), policy(root, follow_symlinks=True)))
    assert {"out-file", "out-dir", "out-relative"} <= set(followed)
    assert "broken" not in followed


def test_docroot_prefix_is_not_enough(tmp_path):
    # /x/root-evil is not inside /x/root even though the string starts alike.
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "root-evil").mkdir()
    os.symlink(tmp_path / "root-evil", root / "link")
    assert names(L.scan(str(root), policy(root))) == []


def test_non_utf8_names_round_trip(root):
    raw = b"caf\xe9.txt"
    with open(os.path.join(os.fsencode(str(root / "sub")), raw), "wb") as f:
        f.write(b"latin")
    lst = L.scan(str(root / "sub"), policy(root))
    name, = [e.name for e in lst.entries if e.name.startswith("caf")]
    assert os.fsencode(name) == raw


def test_notices_prefer_html_and_are_read(root):
    sub = root / "sub"
    (sub / "HEADER.txt").write_text("plain header")
    (sub / "HEADER.html").write_text("<b>html header</b>")
    (sub / "README.txt").write_bytes(b"readme \xff")
    lst = L.scan(str(sub), policy(root))
    assert lst.header == L.Notice("HEADER.html", "<b>html header</b>", True)
    assert lst.readme == L.Notice("README.txt", "readme \ufffd", False)
    # Machine formats still list them; the HTML page hides those it shows.
    assert {"HEADER.html", "HEADER.txt", "README.txt"} <= set(names(lst))


def test_notice_read_even_when_ignored_but_not_through_an_escaping_link(root, tmp_path):
    sub = root / "sub"
    (sub / "README.txt").write_text("read me")
    lst = L.scan(str(sub), policy(root, ignore=("README*",)))
    assert lst.readme.text == "read me" and "README.txt" not in names(lst)
    os.unlink(sub / "README.txt")
    os.symlink(tmp_path / "outside.txt", sub / "HEADER.txt")
    assert L.scan(str(sub), policy(root)).header is None


def test_oversized_notice_is_left_out(root):
    (root / "sub" / "README.txt").write_bytes(b"x" * (L.MAX_NOTICE_BYTES + 1))
    assert L.scan(str(root / "sub"), policy(root)).readme is None


def test_digest_changes_with_what_is_shown(root):
    sub = root / "sub"
    first = L.scan(str(sub), policy(root))
    assert L.scan(str(sub), policy(root)).digest == first.digest
    # Growing a file in place leaves the folder's mtime alone...
    before = os.stat(sub).st_mtime_ns
    with open(sub / "a.txt", "ab") as f:
        f.write(b" world")
    assert os.stat(sub).st_mtime_ns == before
    grown = L.scan(str(sub), policy(root))
    # ...but not the digest or Last-Modified.
    assert grown.digest != first.digest
    assert grown.last_modified == os.stat(sub / "a.txt").st_mtime_ns // 10**9


def test_missing_directory_raises(root):
    with pytest.raises(FileNotFoundError):
        L.scan(str(root / "nope"), policy(root))
    with pytest.raises(NotADirectoryError):
        L.scan(str(root / "secret.txt"), policy(root))


def test_notice_swapped_for_a_fifo_does_not_block(tmp_path):
    # The scan saw a regular README; by the time it is read it is a FIFO.
    # Reading must neither block (a parked helper) nor show anything.
    import threading
    os.mkfifo(tmp_path / "README.txt")
    result = []
    t = threading.Thread(target=lambda: result.append(
        L._read_notice(str(tmp_path / "README.txt"), "README.txt")), daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "reading a FIFO notice blocked"
    assert result == [None]
