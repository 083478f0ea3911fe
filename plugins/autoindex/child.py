"""Render a big listing in a process of its own.

Theory of operation: a helper thread shares the interpreter lock with the
event loop, and a folder of 100,000 names keeps it busy for seconds in
long stretches the loop cannot interrupt: one ``list.sort`` of the rows
(C code, no switch) and the full garbage collections that many new
objects set off, each 100-200 ms with the lock held.  So a listing past
``handler.BIG_LISTING`` entries is scanned and rendered again here, in a
child the loop drives through ``flashplug.procs`` like a CGI script, and
only its bytes come back over a pipe: the loop's process never holds the
objects nor the lock for them.

The job comes as one ASCII JSON argument (names that are not UTF-8 travel
as their surrogate escapes); the body goes to stdout; exit status 0.
"""
import json
import sys

from . import listing as listing_mod
from . import render


def job_argument(fspath, path, view, policy, template_path, options):
    """The argv word that describes one rendering."""
    return json.dumps({
        "fspath": fspath, "path": path, "view": list(view), "template": template_path,
        "policy": {"docroot": policy.docroot, "show_dotfiles": policy.show_dotfiles,
                   "follow_symlinks": policy.follow_symlinks, "ignore": list(policy.ignore),
                   "unlisted": list(policy.unlisted)},
        "options": options}, ensure_ascii=True)


def main(argv):
    job = json.loads(argv[1])
    p = job["policy"]
    policy = listing_mod.Policy(p["docroot"], p["show_dotfiles"], p["follow_symlinks"],
                                tuple(p["ignore"]), tuple(p["unlisted"]))
    listing = listing_mod.scan(job["fspath"], policy)
    template = render.load_template(job["template"])
    body = render.render(template, listing, job["path"], render.View(*job["view"]),
                         **job["options"])
    sys.stdout.buffer.write(body)
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
