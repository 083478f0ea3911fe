"""Real traffic for workload (r): request heads as browsers and curl send them.

Theory of operation: a load generator's default request is one short head
repeated byte for byte, and a server that remembers heads it has answered
can skip parsing it.  Browsers do not repeat themselves that way: each sends
its own User-Agent, Accept, Accept-Language, Sec-Fetch-* and cookies, in its
own field order, and a cookie or a cache-busting query changes from one
request to the next.  This module writes such heads, deterministically (a
fixed seed), for the four workloads of group (r):

    r-browser   Firefox, Chrome, Safari and curl heads, a value that changes
                on every request (the cookie; curl's query), 1 KiB, 64 conns
    r-clients   1,000 clients, each with its own User-Agent and cookie,
                1 KiB, 256 connections
    r-reval     browser heads with a changing cookie, 3 of 4 requests
                conditional (If-None-Match, If-Modified-Since, or both, as a
                browser revalidating sends them) and answered 304
    r-zipf      the 1,000 clients over the 10,000-file Zipf set of (b)

A head is handed to wrk's Lua script as a `Template`: the text cut where the
path goes and, for workloads whose heads change, where the changing value
goes.  The Lua side only concatenates (`wrk.real_script`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

SEED = 12
N_CLIENTS = 1000
# Marks in a head's text, cut out by `template`: never in a real field.
PATH, VARY = "\0path\0", "\0vary\0"


@dataclass(frozen=True)
class Workload:
    key: str
    title: str
    path: str            # the URL wrk is given: the file, or "/" when paths come from a list
    connections: int
    clients: str         # "browsers" (the four header sets) or "many" (N_CLIENTS fixed heads)
    vary: bool           # a value in each head changes on every request
    revalidate: bool = False
    zipf: bool = False   # paths drawn from (b)'s Zipf list rather than `path`


WORKLOADS = (
    Workload("r-browser", "(r) 1 KiB, browser-like heads (Firefox, Chrome, Safari, curl), "
             "a cookie or query that changes on every request, 64 connections",
             "/1k.bin", 64, "browsers", vary=True),
    Workload("r-clients", f"(r) 1 KiB, {N_CLIENTS:,} clients (each its own User-Agent and cookie), 256 connections",
             "/1k.bin", 256, "many", vary=False),
    Workload("r-reval", "(r) revalidation of 1 KiB: 3 of 4 requests carry If-None-Match, If-Modified-Since "
             "or both and are answered 304, browser heads, changing cookie, 64 connections",
             "/1k.bin", 64, "browsers", vary=True, revalidate=True),
    Workload("r-zipf", f"(r) 10,000 files, Zipf-distributed, {N_CLIENTS:,} browser-like clients, 64 connections",
             "/", 64, "many", vary=False, zipf=True),
)


# -- the header sets, field order and values as each client sends them ---------

def firefox(cookie: str | None, version: int = 133, system: str = "X11; Linux x86_64",
            language: str = "en-US,en;q=0.5") -> list[tuple[str, str]]:
    fields = [
        ("User-Agent", f"Mozilla/5.0 ({system}; rv:{version}.0) Gecko/20100101 Firefox/{version}.0"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Accept-Language", language),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Connection", "keep-alive"),
    ]
    if cookie:
        fields.append(("Cookie", cookie))
    return fields + [
        ("Upgrade-Insecure-Requests", "1"),
        ("Sec-Fetch-Dest", "document"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-Site", "none"),
        ("Sec-Fetch-User", "?1"),
        ("Priority", "u=0, i"),
    ]


_CHROME_PLATFORMS = {   # sec-ch-ua-platform: the User-Agent's system part, mobile?
    "Linux": ("X11; Linux x86_64", False),
    "Windows": ("Windows NT 10.0; Win64; x64", False),
    "macOS": ("Macintosh; Intel Mac OS X 10_15_7", False),
    "Android": ("Linux; Android 10; K", True),
}


def chrome(cookie: str | None, version: int = 131, platform: str = "Linux",
           language: str = "en-US,en;q=0.9") -> list[tuple[str, str]]:
    system, mobile = _CHROME_PLATFORMS[platform]
    fields = [
        ("Connection", "keep-alive"),
        ("sec-ch-ua", f'"Google Chrome";v="{version}", "Chromium";v="{version}", "Not_A Brand";v="24"'),
        ("sec-ch-ua-mobile", "?1" if mobile else "?0"),
        ("sec-ch-ua-platform", f'"{platform}"'),
        ("Upgrade-Insecure-Requests", "1"),
        ("User-Agent", f"Mozilla/5.0 ({system}) AppleWebKit/537.36 (KHTML, like Gecko) "
                       f"Chrome/{version}.0.0.0 {'Mobile ' if mobile else ''}Safari/537.36"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,"
                   "image/apng,*/*;q=0.8,application/signed-exchange;v=b3;q=0.7"),
        ("Sec-Fetch-Site", "none"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Sec-Fetch-User", "?1"),
        ("Sec-Fetch-Dest", "document"),
        ("Accept-Encoding", "gzip, deflate, br, zstd"),
        ("Accept-Language", language),
    ]
    return fields + ([("Cookie", cookie)] if cookie else [])


def safari(cookie: str | None, version: str = "18.1", iphone: bool = False,
           language: str = "en-US,en;q=0.9") -> list[tuple[str, str]]:
    if iphone:
        ios = version.replace(".", "_")
        agent = (f"Mozilla/5.0 (iPhone; CPU iPhone OS {ios} like Mac OS X) AppleWebKit/605.1.15 "
                 f"(KHTML, like Gecko) Version/{version} Mobile/15E148 Safari/604.1")
    else:
        agent = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
                 f"(KHTML, like Gecko) Version/{version} Safari/605.1.15")
    fields = [
        ("Sec-Fetch-Dest", "document"),
        ("User-Agent", agent),
        ("Upgrade-Insecure-Requests", "1"),
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ("Sec-Fetch-Site", "none"),
        ("Sec-Fetch-Mode", "navigate"),
        ("Accept-Language", language),
        ("Priority", "u=0, i"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Connection", "keep-alive"),
    ]
    return fields + ([("Cookie", cookie)] if cookie else [])


def curl(version: str = "8.11.0") -> list[tuple[str, str]]:
    return [("User-Agent", f"curl/{version}"), ("Accept", "*/*")]


# -- heads ----------------------------------------------------------------------

def head(fields: list[tuple[str, str]], host: str, target: str = PATH) -> str:
    """The whole request head: request line, Host first (every client above
    sends it first), the fields, the blank line."""
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}"] + [f"{k}: {v}" for k, v in fields]
    return "\r\n".join(lines) + "\r\n\r\n"


@dataclass(frozen=True)
class Template:
    """A head cut into the pieces wrk's script joins: ``before + path + after``,
    or for a changing head ``before + path + after + N + rest`` where N is
    the request's number.  ``rest`` ends with the blank line, or, when a
    conditional field is to be added, just before it (see ``open_end``)."""
    before: str
    after: str
    rest: str | None = None


def template(text: str) -> Template:
    before, _, tail = text.partition(PATH)
    if not tail:
        raise ValueError("a head template needs a path mark")
    after, vary, rest = tail.partition(VARY)
    return Template(before, after, rest if vary else None)


def open_end(t: Template) -> Template:
    """The same template without its final CRLF, so the script can add one
    more field (a validator) and the blank line itself."""
    if t.rest is None:
        return Template(t.before, t.after[:-2])
    return Template(t.before, t.after, t.rest[:-2])


def browsers(host: str) -> list[Template]:
    """The four header sets of r-browser and r-reval: each browser's cookie
    carries the request's number; curl, which sends no cookie, a query."""
    def jar(site: str) -> str:
        return f"_ga=GA1.1.1938443207.1764460800; consent={site}; last_seen={VARY}"
    heads = [head(firefox(jar("all")), host), head(chrome(jar("essential")), host),
             head(safari(jar("all")), host), head(curl(), host, target=f"{PATH}?v={VARY}")]
    return [template(h) for h in heads]


_LANGUAGES = ["en-US,en;q=0.9", "en-GB,en;q=0.9", "de-DE,de;q=0.9,en;q=0.8", "fr-FR,fr;q=0.9,en;q=0.8",
              "es-ES,es;q=0.9", "ja-JP,ja;q=0.9", "pt-BR,pt;q=0.9,en;q=0.8", "nl-NL,nl;q=0.9,en;q=0.8"]


def many(host: str, n: int = N_CLIENTS, seed: int = SEED) -> list[Template]:
    """n clients, each with a head of its own: browser family in rough
    market shares, version, platform, language, and its own session cookie."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        cookie = f"sid={rng.randbytes(16).hex()}; _ga=GA1.1.{rng.randrange(10**9, 10**10)}.1764460800"
        lang = rng.choice(_LANGUAGES)
        kind = rng.random()
        if kind < 0.60:
            fields = chrome(cookie, rng.randint(128, 131), rng.choice(list(_CHROME_PLATFORMS)), lang)
        elif kind < 0.80:
            fields = safari(cookie, rng.choice(["17.6", "18.0", "18.1"]), rng.random() < 0.5, lang)
        elif kind < 0.95:
            system = rng.choice(["X11; Linux x86_64", "Windows NT 10.0; Win64; x64",
                                 "Macintosh; Intel Mac OS X 10.15"])
            fields = firefox(cookie, rng.randint(130, 133), system, lang.replace("0.9", "0.5"))
        else:
            fields = curl(rng.choice(["7.88.1", "8.5.0", "8.11.0"])) + [("Cookie", cookie)]
        out.append(template(head(fields, host)))
    return out


def templates(w: Workload, host: str) -> list[Template]:
    made = browsers(host) if w.clients == "browsers" else many(host)
    return [open_end(t) for t in made] if w.revalidate else made


def conditions(etag: str, last_modified: str) -> list[str]:
    """The extra field for request number N, indexed by N % 4: none (200),
    then If-None-Match, If-Modified-Since, and both, as browsers revalidate."""
    inm, ims = f"If-None-Match: {etag}\r\n", f"If-Modified-Since: {last_modified}\r\n"
    return ["", inm, ims, inm + ims]


REVALIDATED_SHARE = 0.75   # of conditions() above, the share expected to be 304
