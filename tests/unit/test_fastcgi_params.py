"""The fastcgi handler's PARAMS for a request's message (line and fields):
encoded once for each message without a body or a user, and the same
bytes as encoding ``message_env`` anew."""
from flashplug.http.message import Headers, Request
from flashplug_plugins.cgi.env import message_env
from flashplug_plugins.fastcgi import handler as fastcgi_handler
from flashplug_plugins.fastcgi.handler import FastCGIHandler
from flashplug_plugins.fastcgi.protocol import encode_pairs


def request(method="GET", target="/a.php?x=1", fields=(("host", "example.test:8080"),),
            user=None, addr="192.0.2.1"):
    path, _, query = target.partition("?")
    r = Request(method, target, path, path, query, "1.1", Headers(fields))
    r.user = user
    r.server_addr = addr
    return r


def handler():
    return FastCGIHandler(None, "/srv", {}, False, True, 1.0)


def test_message_params_are_the_message_env_and_kept_per_message():
    h = handler()
    cookie = (("host", "example.test"), ("cookie", "a=1"), ("cookie", "b=2"),
              ("authorization", "Basic eA=="), ("content-type", "text/plain"))
    requests = [request(), request(target="/a.php?x=2"), request("HEAD"),
                request(fields=cookie), request(fields=()), request(fields=(), addr="::1"),
                request(fields=(("host", "t"), ("x-latin", "caf\xe9")))]
    want = [encode_pairs(message_env(r, None, True)) for r in requests]
    for _ in range(2):
        assert [h._message_params(r, None) for r in requests] == want
    assert len(h._by_message) == len(requests)


def test_a_body_or_a_user_is_encoded_each_time():
    h = handler()
    assert h._message_params(request(), 5) == encode_pairs(message_env(request(), 5, True))
    with_user = request(user="ann")
    assert b"REMOTE_USERann" in h._message_params(with_user, None)
    assert not h._by_message


def test_the_kept_messages_are_bounded():
    h = handler()
    for n in range(fastcgi_handler.MESSAGES_KEPT + 5):
        h._message_params(request(target=f"/a.php?n={n}"), None)
    assert len(h._by_message) <= fastcgi_handler.MESSAGES_KEPT
    h._by_message.clear()
    h._message_params(request(fields=(("cookie", "a" * fastcgi_handler.MESSAGE_SIZE),)), None)
    assert not h._by_message
