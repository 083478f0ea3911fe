"""Polling for a state that a real server process reaches in its own time."""
import time


def wait_for(predicate, timeout=20, what="condition"):
    """``predicate()``'s first true value, polled every 50 ms; AssertionError
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
