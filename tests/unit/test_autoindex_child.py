"""plugins/autoindex/child.py: the job word round-trips, hostile names too."""
import io
import json
import sys

from flashplug_plugins.autoindex import child, listing, render


def test_the_child_renders_what_a_helper_renders(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "caf\udce9 <b>.txt").write_text("b")   # not UTF-8, and markup
    (tmp_path / ".hidden").write_text("h")
    policy = listing.Policy(str(tmp_path), ignore=("*.bak",))
    options = {"dirs_first": True, "exact_size": False, "localtime": False, "version": "x"}
    view = render.View("html", "name", "asc")
    word = child.job_argument(str(tmp_path), "/d/", view, policy, None, options)
    assert word.isascii() and json.loads(word)["policy"]["ignore"] == ["*.bak"]
    out = io.BytesIO()
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(out))
    assert child.main(["child", word]) == 0
    expected = render.render(render.load_template(), listing.scan(str(tmp_path), policy),
                             "/d/", view, **options)
    assert out.getvalue() == expected and b"caf\\xe9 &lt;b&gt;.txt" in expected
