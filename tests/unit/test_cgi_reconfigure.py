"""The cgi plugin starts afresh on each loaded configuration (a reload)."""
import importlib


class Config:
    def __init__(self, docroot, **settings):
        self.docroot = str(docroot)
        self.script_dirs = {}
        self._settings = settings

    def get(self, name, default=None):
        return self._settings.get(name, default)


def test_a_reload_forgets_the_last_configurations_handlers(tmp_path):
    cgi = importlib.import_module("flashplug_plugins.cgi")
    first, site = Config(tmp_path), Config(tmp_path, cgi_ext=".py")
    cgi.flashplug_configure(first)
    cgi._handler_for(site)
    assert len(cgi._handlers) == 2
    # A reload: the next configuration's objects may reuse the old ids, so
    # none of the last configuration's handlers may be found by them.
    second = Config(tmp_path, cgi_ext=".cgi")
    cgi.flashplug_configure(second)
    assert list(cgi._handlers) == [id(second)]
    assert cgi._handler_for(second).settings.exts == (".cgi",)
