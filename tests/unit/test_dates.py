import calendar
import email.utils

import pytest

from flashplug.http.dates import depends_on_year, format_http_date, parse_http_date, rfc850_year

RFC_EXAMPLE = 784111777  # Sun, 06 Nov 1994 08:49:37 GMT, RFC 9110 §5.6.7


def test_format_rfc_example():
    assert format_http_date(RFC_EXAMPLE) == "Sun, 06 Nov 1994 08:49:37 GMT"


def test_format_epoch_and_fraction():
    assert format_http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert format_http_date(RFC_EXAMPLE + 0.999) == "Sun, 06 Nov 1994 08:49:37 GMT"


@pytest.mark.parametrize("ts", [1, 951782400, 1709164800, 1700000000, 2147483648,
                                4102444799])
def test_format_agrees_with_email_utils(ts):
    assert format_http_date(ts) == email.utils.formatdate(ts, usegmt=True)


@pytest.mark.parametrize("value", [
    "Sun, 06 Nov 1994 08:49:37 GMT",
    "Sunday, 06-Nov-94 08:49:37 GMT",
    "Sun Nov  6 08:49:37 1994",
    "  Sun, 06 Nov 1994 08:49:37 GMT\t",
])
def test_parse_three_formats(value):
    assert parse_http_date(value) == RFC_EXAMPLE


def test_parse_asctime_two_digit_day():
    assert parse_http_date("Wed Nov 16 08:49:37 1994") == calendar.timegm(
        (1994, 11, 16, 8, 49, 37))


def test_round_trip():
    for ts in range(0, 4_000_000_000, 86_399_017):
        assert parse_http_date(format_http_date(ts)) == ts


def test_leap_day_and_leap_second():
    assert parse_http_date("Thu, 29 Feb 2024 00:00:00 GMT") == 1709164800
    assert parse_http_date("Sat, 31 Dec 2016 23:59:60 GMT") == 1483228800


@pytest.mark.parametrize("value", [
    "",
    "garbage",
    "Sun, 06 Nov 1994 08:49:37",            # no zone
    "Sun, 06 Nov 1994 08:49:37 UTC",        # only GMT is allowed
    "Sun, 06 Nov 1994 08:49:37 +0000",
    "sun, 06 nov 1994 08:49:37 GMT",        # names are case-sensitive
    "Sun, 6 Nov 1994 08:49:37 GMT",         # day must be two digits
    "Sun, 06 Nov 94 08:49:37 GMT",
    "Sun, 31 Feb 1994 08:49:37 GMT",        # no such day
    "Sun, 00 Nov 1994 08:49:37 GMT",
    "Sun, 29 Feb 2023 08:49:37 GMT",        # not a leap year
    "Sun, 06 Nov 1994 24:00:00 GMT",
    "Sun, 06 Nov 1994 08:60:00 GMT",
    "Sun, 06 Nov 1994 08:49:61 GMT",
    "Sun, 06 Foo 1994 08:49:37 GMT",
    "Sun, 06 Nov 1994 08:49:37 GMT, Sun, 06 Nov 1994 08:49:37 GMT",  # a list
    "Sun, \u0660\u0666 Nov 1994 08:49:37 GMT",  # Arabic-Indic digits
    "784111777",
    "Sun, 06-Nov-94 08:49:37 GMT",          # RFC 850 needs the long day name
    "Sunday, 06 Nov 1994 08:49:37 GMT",
    "Sun Nov 6 08:49:37 1994",              # asctime pads the day with a space
])
def test_parse_invalid(value):
    assert parse_http_date(value) is None


@pytest.mark.parametrize("value, expected", [
    ("Sat, 01 Jan 0000 00:00:00 GMT", -62167219200),
    ("Sat Jan  1 00:00:00 0000", -62167219200),
    ("Tue, 29 Feb 0000 12:00:00 GMT", -62162078400),     # year 0 is a leap year
    ("Sun, 31 Dec 0000 23:59:59 GMT", -62135596801),     # a second before year 1
    ("Mon, 01 Jan 0001 00:00:00 GMT", -62135596800),
    ("Fri, 31 Dec 9999 23:59:59 GMT", 253402300799),
])
def test_every_four_digit_year_parses(value, expected):
    """The grammar's year is any 4DIGIT, 0000 too, which ``calendar``
    refuses (it raised, and the request got a 500)."""
    assert parse_http_date(value) == expected


def test_rfc850_two_digit_year_window():
    assert rfc850_year(94, 2025) == 1994
    assert rfc850_year(25, 2025) == 2025
    assert rfc850_year(75, 2025) == 2075   # exactly 50 years ahead: kept
    assert rfc850_year(76, 2025) == 1976   # more than 50 ahead: last century
    assert rfc850_year(0, 2099) == 2100
    assert rfc850_year(50, 2099) == 2050


def test_rfc850_parse_uses_current_century():
    assert parse_http_date("Thursday, 01-Jan-70 00:00:00 GMT") in (0, 3155760000)
    assert parse_http_date("Friday, 01-Jan-10 00:00:00 GMT") == 1262304000


def test_only_an_rfc850_date_depends_on_the_year():
    """What a remembered revalidation may keep its verdict for
    (``cycle.KnownHead.steady``): a date read the same in any year."""
    assert depends_on_year("Sunday, 06-Nov-94 08:49:37 GMT")
    assert depends_on_year(" Sunday, 06-Nov-94 08:49:37 GMT\t")
    for value in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "garbage", ""):
        assert not depends_on_year(value)
