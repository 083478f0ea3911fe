"""The links of an HTML page as a browser sees them."""
from html.parser import HTMLParser


class _Links(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links, self._href, self._text = [], None, []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href, self._text = dict(attrs)["href"], []

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def links_of(page):
    """``(href, text)`` of every ``<a>`` of ``page`` (str), in order."""
    parser = _Links()
    parser.feed(page)
    return parser.links
