"""HTTP dates (RFC 9110 §5.6.7): format one, parse all three legacy forms.

Theory of operation: every date we send is an IMF-fixdate, built from
``time.gmtime`` with fixed English tables (``strftime`` would follow the
process locale and ``email.utils`` is several times slower).  Dates we
receive may be IMF-fixdate, the obsolete RFC 850 form or ANSI C asctime;
each has one anchored regular expression.  A value that matches none of
them, or names an impossible calendar date, is "not a valid HTTP-date" and
callers ignore the header that carried it, as RFC 9110 asks.
"""

import calendar
import re
import time

# tm_wday counts from Monday.
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun",
           "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTH_NUMBER = {name: i for i, name in enumerate(_MONTHS, 1)}

# re.ASCII: \d must not match other scripts' digits, which int() accepts.
# Day and month names are case-sensitive (RFC 9110 §5.6.7).  A mismatch
# only costs a full response instead of a 304, so strictness is safe.
_DAY = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)"
_LONG_DAY = "(?:Monday|Tuesday|Wednesday|Thursday|Friday|Saturday|Sunday)"
_MONTH = "(" + "|".join(_MONTHS) + ")"
_TIME = r"(\d\d):(\d\d):(\d\d)"

# Sun, 06 Nov 1994 08:49:37 GMT
_IMF_FIXDATE = re.compile(_DAY + r", (\d\d) " + _MONTH + r" (\d{4}) " + _TIME + " GMT", re.ASCII)
# Sunday, 06-Nov-94 08:49:37 GMT
_RFC850 = re.compile(_LONG_DAY + r", (\d\d)-" + _MONTH + r"-(\d\d) " + _TIME + " GMT", re.ASCII)
# Sun Nov  6 08:49:37 1994   (day of month padded with a space)
_ASCTIME = re.compile(_DAY + " " + _MONTH + r" ([ \d]\d) " + _TIME + r" (\d{4})", re.ASCII)

# The four-digit year may be 0000, which ``calendar`` (datetime.MINYEAR is
# 1) refuses: such a date is read 400 years later, in the same leap-year
# cycle, and moved back by the seconds of 400 Gregorian years.
_CYCLE_YEARS = 400
_CYCLE_SECONDS = 146_097 * 86_400


# The instants an HTTP-date can name: its year has four digits, 0001-9999
# (0000 too when read, see parse_http_date; none of ours is that old).
FIRST_DATE = -62135596800        # Mon, 01 Jan 0001 00:00:00 GMT
LAST_DATE = 253402300799         # Fri, 31 Dec 9999 23:59:59 GMT


def nameable(ts):
    """``ts`` (seconds since the epoch) brought within the years an HTTP-date
    can name.  A file system may hold any 64-bit time (tmpfs does, ``touch
    -d @-70000000000`` works): formatted as it is, such a time makes a year
    of five digits or a negative one, or ``time.gmtime`` refuses it
    (EOVERFLOW)."""
    return min(max(ts, FIRST_DATE), LAST_DATE)


def format_http_date(ts):
    """``ts`` (seconds since the epoch) as an IMF-fixdate string."""
    t = time.gmtime(ts)
    return "%s, %02d %s %04d %02d:%02d:%02d GMT" % (
        _DAYS[t.tm_wday], t.tm_mday, _MONTHS[t.tm_mon - 1], t.tm_year,
        t.tm_hour, t.tm_min, t.tm_sec)


def rfc850_year(yy, this_year):
    """The full year for a two-digit RFC 850 year seen in ``this_year``.

    RFC 9110 §5.6.7: a year that appears to be more than 50 years in the
    future is the most recent past year with the same last two digits.
    """
    # The latest year ending in ``yy`` that is at most 50 years ahead.
    limit = this_year + 50
    return limit - (limit - yy) % 100


def depends_on_year(value):
    """Does the meaning of the HTTP-date ``value`` depend on the year it is
    read in?  Only an RFC 850 date's does (its two-digit year, see
    ``rfc850_year``); any other value parses the same whenever."""
    return _RFC850.fullmatch(value.strip(" \t")) is not None


def parse_http_date(value):
    """Seconds since the epoch for an HTTP-date, or None when it is invalid."""
    value = value.strip(" \t")
    m = _IMF_FIXDATE.fullmatch(value)
    if m:
        day, month, year, hh, mm, ss = m.groups()
        year = int(year)
    else:
        m = _RFC850.fullmatch(value)
        if m:
            day, month, yy, hh, mm, ss = m.groups()
            year = rfc850_year(int(yy), time.gmtime().tm_year)
        else:
            m = _ASCTIME.fullmatch(value)
            if not m:
                return None
            month, day, hh, mm, ss, year = m.groups()
            year = int(year)
    month = _MONTH_NUMBER[month]
    day, hh, mm, ss = int(day), int(hh), int(mm), int(ss)
    shift = _CYCLE_YEARS if year == 0 else 0
    # second 60 is a leap second, which the grammar allows.
    if not (1 <= day <= calendar.monthrange(year + shift, month)[1]
            and hh <= 23 and mm <= 59 and ss <= 60):
        return None
    return calendar.timegm((year + shift, month, day, hh, mm, ss)) - (shift and _CYCLE_SECONDS)
