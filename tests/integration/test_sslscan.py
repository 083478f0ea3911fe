"""sslscan (Debian's) against a running HTTPS server: the security defaults
as an outside scanner sees them.  Skips where sslscan is not installed
(``.ci/run`` installs it)."""
import re
import shutil
import subprocess

import pytest

from tests.tls_certs import ca, site  # noqa: F401 - fixtures

SSLSCAN = shutil.which("sslscan")
# Cipher name parts that mean a broken or weak suite.
WEAK = ("NULL", "EXP", "RC4", "DES", "MD5", "ADH", "AECDH", "PSK", "SRP", "CBC")


def problems(report):
    """What sslscan's report shows that issue 14 forbids, as lines."""
    found = []
    for proto in ("SSLv2", "SSLv3", "TLSv1.0", "TLSv1.1"):
        if re.search(rf"^{re.escape(proto)}\s+enabled", report, re.M):
            found.append(f"{proto} enabled")
    if "Compression enabled" in report:
        found.append("TLS compression")
    if "Insecure session renegotiation supported" in report:
        found.append("insecure renegotiation")
    ciphers = re.findall(r"^(?:Preferred|Accepted)\s+(TLSv1\.[0-3]|SSLv\d)\s+\d+ bits\s+(\S+)",
                         report, re.M)
    if not ciphers:
        found.append("no cipher listed: did sslscan reach the server?")
    for proto, name in ciphers:
        if proto != "TLSv1.3" and not name.startswith(("ECDHE-", "DHE-")):
            found.append(f"{proto} {name}: no forward secrecy")
        if proto != "TLSv1.3" and not ("GCM" in name or "CHACHA20" in name):
            found.append(f"{proto} {name}: not AEAD")
        if any(part in name for part in WEAK) or name.endswith("-SHA"):
            found.append(f"{proto} {name}: weak cipher")
    return found


def test_the_checker_catches_what_it_must():
    bad = ("TLSv1.1   enabled\nCompression enabled\n"
           "Insecure session renegotiation supported\n"
           "Accepted  TLSv1.2  128 bits  AES128-SHA\n")
    found = problems(bad)
    assert "TLSv1.1 enabled" in found and "TLS compression" in found
    assert "insecure renegotiation" in found
    assert "TLSv1.2 AES128-SHA: no forward secrecy" in found
    assert "TLSv1.2 AES128-SHA: weak cipher" in found


@pytest.mark.skipif(SSLSCAN is None, reason="sslscan is not installed (apt-get install sslscan)")
def test_sslscan_finds_nothing_weak(server_factory, site):  # noqa: F811
    root, cert, key, ca_path = site
    s = server_factory(root, "--tls-cert", cert, "--tls-key", key, "--access-log", "off")
    proc = subprocess.run([SSLSCAN, "--no-colour", f"127.0.0.1:{s.port}"],
                          capture_output=True, text=True, timeout=120)
    report = proc.stdout
    assert re.search(r"^TLSv1\.2\s+enabled", report, re.M), report
    assert re.search(r"^TLSv1\.3\s+enabled", report, re.M), report
    assert problems(report) == [], report
    assert "Traceback" not in s.log()
