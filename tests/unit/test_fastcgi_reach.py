"""plugins/fastcgi/reach.py: may a spawn: backend's user enter the root?"""
import os
import stat

from flashplug_plugins.fastcgi.reach import unreachable

NOBODY = (65534, 65534, (65534,))


def fake(tree):
    """``tree``: {path: (mode, uid, gid)} of folders."""
    def fake_stat(path):
        mode, uid, gid = tree[path]
        return os.stat_result((stat.S_IFDIR | mode, 0, 0, 0, uid, gid, 0, 0, 0, 0))
    return fake_stat


def test_search_on_the_way_and_read_on_the_root():
    tree = {"/": (0o755, 0, 0), "/srv": (0o755, 0, 0), "/srv/www": (0o755, 0, 0)}
    assert unreachable("/srv/www", NOBODY, fake(tree)) is None
    tree["/srv/www"] = (0o700, 0, 0)
    assert unreachable("/srv/www", NOBODY, fake(tree)) == ("/srv/www", "search")
    tree["/srv/www"] = (0o711, 0, 0)
    assert unreachable("/srv/www", NOBODY, fake(tree)) == ("/srv/www", "read")
    tree["/srv/www"] = (0o755, 0, 0)
    tree["/srv"] = (0o750, 0, 0)
    assert unreachable("/srv/www", NOBODY, fake(tree)) == ("/srv", "search")


def test_owner_and_group_bits_count_for_them():
    tree = {"/": (0o755, 0, 0), "/www": (0o750, 0, 65534)}
    assert unreachable("/www", NOBODY, fake(tree)) is None          # by group
    tree["/www"] = (0o700, 65534, 0)
    assert unreachable("/www", NOBODY, fake(tree)) is None          # by owner
    tree["/www"] = (0o070, 65534, 65534)
    assert unreachable("/www", NOBODY, fake(tree)) == ("/www", "search")   # owner bits rule
    assert unreachable("/www", (0, 0, ()), fake(tree)) is None      # root passes
