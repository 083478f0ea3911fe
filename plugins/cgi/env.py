"""The CGI/1.1 environment of a request (RFC 3875 §4.1), and its argv (§4.4).

Theory of operation: ``build_env`` is a pure function from a request, the
located script and a few settings to the child's complete environment.
Nothing of the server's own environment goes in except ``PATH`` and the
names the operator passes on explicitly, so secrets in the server's
environment never reach scripts.

Values are ``str`` in the file-system encoding, like ``os.environ``: bytes
that arrived on the wire (header values are ISO-8859-1 ``str``, paths are
UTF-8 with surrogateescape) are carried so that ``os.fsencode`` gives the
child back exactly the bytes the client sent.

Request headers become ``HTTP_*`` variables, with these exceptions:

* ``Content-Length`` and ``Content-Type`` are the CGI variables
  ``CONTENT_LENGTH`` and ``CONTENT_TYPE`` instead;
* ``Proxy`` never passes: ``HTTP_PROXY`` would be taken by most HTTP client
  libraries as the proxy to use ("httpoxy", CVE-2016-5385);
* ``Authorization`` passes only when the operator opts in, and
  ``Proxy-Authorization`` never (credentials meant for a proxy);
* ``Transfer-Encoding``: the body a script reads is always de-chunked and
  counted by ``CONTENT_LENGTH``, so the header would mislead it;
* a name with anything other than letters, digits and ``-`` (``X_Foo``)
  is dropped, because ``X-Foo`` and ``X_Foo`` would both become
  ``HTTP_X_FOO`` and one could smuggle a value past a proxy that checked
  the other (nginx and Apache drop them too).

Repeated headers are joined with ``", "`` (RFC 9110 §5.3), except ``Cookie``,
which is joined with ``"; "``, the only separator a cookie parser knows
(RFC 6265 §5.4).
"""
import os
import re

from flashplug import __version__

SERVER_SOFTWARE = "flashplug/" + __version__

#: Headers that never become HTTP_* variables (lowercase names).
NOT_PASSED = frozenset({
    "content-length", "content-type", "proxy", "proxy-authorization",
    "transfer-encoding",
})

_SAFE_NAME = re.compile(r"[A-Za-z0-9-]+\Z")

def _wire(value):
    """An ISO-8859-1 header str -> the fs-encoding str of the same bytes."""
    if value.isascii():
        return value
    return value.encode("latin-1").decode("utf-8", "surrogateescape")


def base_env(pass_env, environ=os.environ):
    """The part of the environment that comes from the server's own:
    ``PATH`` (or the system default) and each ``NAME`` or ``NAME=VALUE`` of
    ``--cgi-pass-env``."""
    env = {"PATH": environ.get("PATH") or os.defpath}
    for item in pass_env:
        name, eq, value = item.partition("=")
        if eq:
            env[name] = value
        elif name in environ:
            env[name] = environ[name]
    return env


def server_name(request):
    """The host name the client addressed (``request.host``: the target's
    authority or Host, lowercased, port dropped), else the local address."""
    host = request.host
    if host:
        return host
    addr = request.server_addr
    return f"[{addr}]" if ":" in addr else addr


def build_env(request, script, base, docroot, content_length,
              pass_authorization=False):
    """The environment for running ``script`` for ``request``: the
    :func:`fixed_env` and the :func:`request_env` (the request's part wins
    where a ``--cgi-pass-env`` name is one of its own).

    :param script: a :class:`~flashplug_plugins.cgi.script.Script`.
    :param base: the result of :func:`base_env`.
    :param content_length: the length of the body the script will read, or
        None when the request has no body.
    """
    env = fixed_env(base, docroot)
    env.update(request_env(request, script, docroot, content_length, pass_authorization))
    return env


def request_env(request, script, docroot, content_length, pass_authorization=False):
    """The variables that come from ``request`` and ``script``, in a new
    dict: three parts, of which no two share a name, each of its own
    function so that the fastcgi plugin can encode a part once for as long
    as it does not change: :func:`connection_env`, :func:`script_env` and
    :func:`message_env`."""
    env = connection_env(connection_facts(request))
    env.update(script_env(script, docroot))
    env.update(message_env(request, content_length, pass_authorization))
    return env


def fixed_env(base, docroot):
    """The part of the environment that is the same for every request of
    one handler: ``base`` and the constant CGI variables.  The fastcgi
    plugin encodes it once, not per request."""
    env = dict(base)
    env["GATEWAY_INTERFACE"] = "CGI/1.1"
    env["SERVER_SOFTWARE"] = SERVER_SOFTWARE
    env["DOCUMENT_ROOT"] = docroot
    # PHP's php-cgi refuses to run without it (cgi.force_redirect).
    env["REDIRECT_STATUS"] = "200"
    return env


def connection_facts(request):
    """What :func:`connection_env` is made of, as a hashable tuple: the
    addresses, the scheme and the HTTP version, which are the same for every
    request on one client connection (a trusted proxy's forwarded address
    aside), so the fastcgi plugin encodes that part once per tuple."""
    return (request.remote_addr, request.remote_port, request.server_addr,
            request.server_port, request.scheme, request.version)


def connection_env(facts):
    """The variables of a :func:`connection_facts` tuple, in a new dict."""
    remote_addr, remote_port, server_addr, server_port, scheme, version = facts
    env = {
        "SERVER_PROTOCOL": "HTTP/" + version,
        "SERVER_ADDR": server_addr,
        "SERVER_PORT": str(server_port),
        "REQUEST_SCHEME": scheme,
        "REMOTE_ADDR": remote_addr,
        # No reverse DNS lookup on the request path: §4.1.9 allows the
        # address in place of the name.
        "REMOTE_HOST": remote_addr,
    }
    if scheme == "https":
        env["HTTPS"] = "on"
    if remote_port:
        # Not in RFC 3875, but scripts expect it; behind a trusted proxy
        # whose header gives no port it is unknown, and left out rather
        # than made up (nginx's $remote_port is empty then).
        env["REMOTE_PORT"] = str(remote_port)
    return env


def script_env(script, docroot):
    """The variables that name the script and the path after it, in a new
    dict (the fastcgi plugin encodes them once per script found)."""
    env = {"SCRIPT_NAME": script.script_name, "SCRIPT_FILENAME": script.filename}
    if script.path_info:
        env["PATH_INFO"] = script.path_info
        env["PATH_TRANSLATED"] = docroot + script.path_info
    return env


# Header name -> its HTTP_* variable, or None when it is not passed
# (NOT_PASSED, or a name with "_"): a handful of names recur on every
# request, so each is worked out once (up to _KEYS_MAX of them).
_KEYS = {}
_KEYS_MAX = 512


def _key(name):
    key = _KEYS.get(name, _KEYS)
    if key is _KEYS:
        key = None if name in NOT_PASSED or not _SAFE_NAME.match(name) \
            else "HTTP_" + name.upper().replace("-", "_")
        if len(_KEYS) < _KEYS_MAX:
            _KEYS[name] = key
    return key


def message_env(request, content_length, pass_authorization=False):
    """The variables that come from the request message itself (its
    line, its header fields, the user an authentication plugin named), in
    a new dict; see :func:`build_env`.  One pass over the fields, which also
    finds Content-Type."""
    env = {}
    content_type = None
    for name, value in request.headers:
        key = _KEYS.get(name, _KEYS)
        if key is _KEYS:
            key = _key(name)
        if key is None:
            if name == "content-type":
                content_type = value if content_type is None else content_type + ", " + value
            continue
        if name == "authorization" and not pass_authorization:
            continue
        if not value.isascii():
            value = _wire(value)
        if key in env:
            env[key] += ("; " if name == "cookie" else ", ") + value
        else:
            env[key] = value

    if content_length is not None:
        env["CONTENT_LENGTH"] = str(content_length)
    if content_type is not None:
        env["CONTENT_TYPE"] = _wire(content_type)
    if request.user is not None:
        env["REMOTE_USER"] = _wire(request.user)
    if request.auth_type is not None:
        env["AUTH_TYPE"] = request.auth_type
    target = request.target
    query = request.query
    env["SERVER_NAME"] = server_name(request)
    env["REQUEST_METHOD"] = request.method
    # The path and query as sent (nginx's $request_uri), also for an
    # absolute-form target, whose scheme and host are not the path.
    uri = target if target.startswith("/") else request.raw_path + ("?" + query if query else "")
    env["REQUEST_URI"] = uri if uri.isascii() else _wire(uri)
    env["QUERY_STRING"] = query if query.isascii() else _wire(query)
    return env


def search_argv(method, query):
    """Command-line words from an ISINDEX-style query (RFC 3875 §4.4).

    Only for GET or HEAD with a query that has no ``=``: split on ``+``,
    percent-decode each word.  Returns ``[]`` when the rule does not apply
    or a word cannot be decoded (the RFC then wants no arguments at all).
    """
    if method not in ("GET", "HEAD") or not query or "=" in query:
        return []
    words = []
    for word in query.split("+"):
        data = _unquote(word)
        if data is None or b"\0" in data:
            return []
        words.append(data.decode("utf-8", "surrogateescape"))
    return words


_ESCAPE = re.compile(rb"%([0-9A-Fa-f]{2})")


def _unquote(word):
    """Strict percent-decoding: None on a malformed escape."""
    data = word.encode("latin-1", "replace")
    if data.count(b"%") != len(_ESCAPE.findall(data)):
        return None
    return _ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), data)
