"""When to order: renewal times and retry delays (pure; times in seconds
since the epoch).

A certificate is renewed once two thirds of its lifetime have passed, as
Let's Encrypt advises: 30 days before the end of a 90-day certificate,
two days before the end of a 6-day one.  A fixed "30 days before" would
renew short-lived certificates at once, forever.  A failed order is
retried after ``first`` seconds, then twice as long after each further
failure, up to ``ceiling``.
"""
import datetime

RENEW_AT = 2 / 3


def renewal_time(not_before, not_after):
    """When a certificate valid from ``not_before`` to ``not_after`` is due."""
    return not_before + (not_after - not_before) * RENEW_AT


def retry_delay(failures, first, ceiling):
    """Seconds to wait after the ``failures``-th failure in a row (>= 1)."""
    return min(first * 2 ** min(failures - 1, 60), ceiling)


def validity(cert_pem):
    """``(not_before, not_after)`` of the first certificate in a PEM chain."""
    from cryptography import x509
    cert = x509.load_pem_x509_certificate(cert_pem)
    return (cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp())


def when(timestamp):
    """A timestamp as the log shows it: ``2026-11-30 12:00:00 UTC``."""
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc) \
        .strftime("%Y-%m-%d %H:%M:%S UTC")
