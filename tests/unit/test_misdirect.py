"""The 421 check (``flashplug.misdirect``) is the drivers' step, once per
parsed request before its site is chosen: the App's ``misdirect``, None
unless a connection's certificate may be asked for a name another one
covers; choosing a site never answers 421 (an error page's site, a
plugin's made-up request)."""
import pytest

from flashplug.app import App
from flashplug.cli import build_serve
from flashplug.http.h1_checks import ProtocolError
from flashplug.misdirect import _checked
from flashplug.tls import load_certificates
from tests.memory_transport import ManualLoop
from tests.tls_certs import ca, write_pair  # noqa: F401 - a fixture


@pytest.fixture
def app(tmp_path, ca):  # noqa: F811
    a_cert, a_key = write_pair(ca, tmp_path, "localhost", stem="a")
    b_cert, b_key = write_pair(ca, tmp_path, "b.test", "*.w.test", stem="b")
    config = build_serve([str(tmp_path), "--arch", "sped", "--access-log", "off",
                          "--tls-cert", str(a_cert), "--tls-key", str(a_key),
                          "--tls-cert", str(b_cert), "--tls-key", str(b_key)])
    config.certificates = load_certificates(config)
    return App(config, ManualLoop())


def test_the_app_checks_nothing_its_views_check_each_host(app):
    certificates = app.certificates
    assert app.misdirect is None
    ctx = certificates.context_for("localhost")
    assert ctx in certificates.checked
    view = _checked(app, certificates, ctx)
    for host in ("b.test", "a.w.test"):
        with pytest.raises(ProtocolError) as refused:
            view.misdirect(host)
        assert refused.value.status == 421 and host in refused.value.message
    for host in ("localhost", "127.0.0.1", "unknown.test", ""):
        view.misdirect(host)          # served: covered, or no certificate's
    assert app.misdirect is None      # the view's own, not the App's


def test_choosing_a_site_never_answers_421(app):
    certificates = app.certificates
    view = _checked(app, certificates, certificates.context_for("localhost"))
    assert view.sites.choose("b.test") is app.default_site
    assert view.sites.for_value(b"b.test").target_path_ok is False   # to the full path
    assert view.sites.for_value(b"localhost") is app.default_site
