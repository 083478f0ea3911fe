"""flashplug.procs: real child processes on a real event loop, no sockets.

Every test runs on asyncio's default loop and on uvloop.
"""
import asyncio
import os
import signal
import time

import pytest

from flashplug import procs
from procfs import zombies_of

ENV = {"PATH": "/usr/bin:/bin"}

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
    uvloop = None


@pytest.fixture(params=["asyncio", "uvloop"])
def run(request):
    if request.param == "uvloop" and uvloop is None:
        pytest.skip("uvloop not installed")

    def runner(coro_fn, *args):
        async def main():
            loop = asyncio.get_running_loop()
            manager = procs.ProcessManager(loop, *args[:3] if args else (8, 8))
            try:
                return await coro_fn(manager)
            finally:
                await manager.close()
        if request.param == "uvloop":
            return uvloop.run(main())
        return asyncio.run(main())
    return runner


def sh(manager, script, **kw):
    return manager.spawn("/bin/sh", ["sh", "-c", script], ENV, "/", **kw)


async def read_all(proc, timeout=5):
    out = b""
    while True:
        data = await proc.read(timeout)
        if not data:
            return out
        out += data


def test_stdout_stderr_cwd_and_env(run, tmp_path):
    async def go(m):
        lines = []
        p = await m.spawn("/bin/sh", ["sh", "-c", "pwd; echo $FOO; env | wc -l; "
                                      "echo one >&2; printf 'two\\r\\nthr' >&2"],
                          {"FOO": "bar"}, str(tmp_path), on_stderr=lines.append)
        out = await read_all(p)
        p.finish()
        assert await p.wait() == 0
        return out, lines
    out, lines = run(go)
    cwd, foo, count = out.decode().split("\n")[:3]
    assert cwd == str(tmp_path)
    assert foo == "bar"
    assert int(count) <= 3  # FOO plus what sh itself sets (PWD, ...)
    assert lines == [b"one", b"two", b"thr"]


def test_child_sees_only_stdio_descriptors(run):
    # Even a descriptor the parent made inheritable must not reach the child.
    leak = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leak, True)
    try:
        async def go(m):
            p = await sh(m, "ls /proc/$$/fd", stdin=procs.PIPE,
                         on_stderr=lambda line: None)
            out = await read_all(p)
            p.finish()
            await p.wait()
            return out
        assert run(go).split() == [b"0", b"1", b"2"]
    finally:
        os.close(leak)


def test_signals_are_reset_in_child(run):
    # Python ignores SIGPIPE; a child must start with the default action,
    # so `yes | head` ends instead of spinning on EPIPE.  `exec`: a shell
    # waiting for a child blocks signals itself, so read grep's own masks.
    async def go(m):
        p = await sh(m, "exec grep -E '^Sig(Ign|Blk)' /proc/self/status")
        out = await read_all(p)
        p.finish()
        return out
    masks = {line.split(":")[0]: int(line.split()[1], 16)
             for line in run(go).decode().splitlines()}
    assert masks["SigBlk"] == 0
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        assert not masks["SigIgn"] & (1 << (sig - 1)), sig


def test_own_process_group(run):
    async def go(m):
        p = await sh(m, "ps -o pgid= -p $$")
        out = await read_all(p)
        p.finish()
        await p.wait()
        return p.pid, int(out)
    pid, pgid = run(go)
    assert pgid == pid


def test_stdin_backpressure_both_ways(run):
    # 8 MB through `cat`: far more than two pipe buffers, so it only
    # completes if writing and reading interleave.
    payload = os.urandom(1 << 20) * 8

    async def go(m):
        p = await sh(m, "cat", stdin=procs.PIPE)

        async def feed():
            for i in range(0, len(payload), 100_000):
                await p.write(payload[i:i + 100_000], timeout=5)
            p.close_stdin()
        feeder = asyncio.ensure_future(feed())
        out = await read_all(p)
        await feeder
        p.finish()
        return out
    assert run(go) == payload


def test_stdin_from_descriptor(run, tmp_path):
    body = tmp_path / "body"
    body.write_bytes(b"spooled body")

    async def go(m):
        fd = os.open(body, os.O_RDONLY)
        try:
            p = await sh(m, "cat", stdin=fd)
        finally:
            os.close(fd)
        out = await read_all(p)
        p.finish()
        return out
    assert run(go) == b"spooled body"


def test_write_to_exited_child_raises_broken_pipe(run):
    async def go(m):
        p = await sh(m, "exit 0", stdin=procs.PIPE)
        await p.wait()
        with pytest.raises(BrokenPipeError):
            await p.write(b"x" * 200_000, timeout=5)
        p.finish()
    run(go)


def test_read_timeout(run):
    async def go(m):
        p = await sh(m, "sleep 5")
        t = time.monotonic()
        with pytest.raises(TimeoutError):
            await p.read(timeout=0.2)
        assert time.monotonic() - t < 2
        p.finish(kill=True)
        return await p.wait()
    assert run(go) == -9


def test_kill_takes_the_whole_group(run):
    async def go(m):
        # The grandchild keeps stdout open; killing only the shell would
        # leave read() waiting for it.
        p = await sh(m, "sleep 30 & echo $!; wait")
        grandchild = int((await p.read(5)).strip())
        p.finish(kill=True)
        await p.wait()
        await asyncio.sleep(0.1)
        return grandchild
    grandchild = run(go)
    assert not os.path.exists(f"/proc/{grandchild}") or \
        open(f"/proc/{grandchild}/stat").read().split(") ")[1][0] == "Z"


def test_finish_grace_kills_a_lingering_child(run):
    async def go(m):
        p = await sh(m, "exec >&-; sleep 30")
        assert await read_all(p) == b""
        t = time.monotonic()
        p.finish(grace=0.2)
        code = await p.wait()
        return code, time.monotonic() - t
    code, waited = run(go)
    assert code == -9 and waited < 5


def test_exit_codes(run):
    async def go(m):
        codes = []
        for script in ("exit 3", "kill -TERM $$"):
            p = await sh(m, script)
            await read_all(p)
            p.finish()
            codes.append(await p.wait())
        return codes
    assert run(go) == [3, -15]


def test_spawn_failure_releases_slot(run, tmp_path):
    noexec = tmp_path / "noexec"
    noexec.write_text("echo no shebang\n")
    noexec.chmod(0o644)

    async def go(m):
        for path in (str(tmp_path / "missing"), str(noexec)):
            with pytest.raises(OSError):
                await m.spawn(path, [path], ENV, "/")
        return m.slots.active
    assert run(go, 1, 0) == 0


def test_limit_queue_and_busy(run):
    async def go(m):
        first = await sh(m, "sleep 30")
        queued = asyncio.ensure_future(sh(m, "echo queued"))
        await asyncio.sleep(0.05)
        assert m.slots.waiting == 1
        with pytest.raises(procs.Busy, match="queue"):
            await sh(m, "true")              # queue (size 1) is full
        first.finish(kill=True)
        second = await queued                # got the freed slot
        out = await read_all(second)
        second.finish()
        await second.wait()
        return out
    assert run(go, 1, 1) == b"queued\n"


def test_queue_wait_times_out(run):
    async def go(m):
        first = await sh(m, "sleep 30")
        with pytest.raises(procs.Busy, match="waited"):
            await sh(m, "true", queue_timeout=0.1)
        assert m.slots.waiting == 0
        first.finish(kill=True)
        await first.wait()
    run(go, 1, 4)


def test_cancelled_waiter_leaves_queue(run):
    async def go(m):
        first = await sh(m, "sleep 30")
        waiter = asyncio.ensure_future(sh(m, "true"))
        await asyncio.sleep(0.05)
        waiter.cancel()
        await asyncio.sleep(0)
        assert m.slots.waiting == 0
        first.finish(kill=True)
        await first.wait()
        await asyncio.sleep(0.05)
        return m.slots.active
    assert run(go, 1, 4) == 0


def test_close_kills_everything(run):
    async def go(m):
        ps = [await sh(m, "sleep 30") for _ in range(3)]
        await m.close()
        return [p.returncode for p in ps], m.running
    codes, running = run(go)
    assert codes == [-9] * 3 and not running


def test_thousands_of_children_leave_no_zombies_or_descriptors(run):
    def fds():
        return len(os.listdir("/proc/self/fd"))

    async def go(m):
        async def one():
            p = await sh(m, "echo x; echo y >&2", stdin=procs.PIPE,
                         on_stderr=lambda line: None)
            try:
                await p.write(b"ignored")
            except BrokenPipeError:  # sh may have exited already
                pass
            assert await read_all(p) == b"x\n"
            p.finish()
            await p.wait()
        await one()  # warm up lazily created objects
        before = fds()
        for _ in range(100):
            await asyncio.gather(*[one() for _ in range(20)])
        return before, fds(), m.slots.active, len(m.running)
    before, after, active, running = run(go, 20, 0)
    assert after == before
    assert (active, running) == (0, 0)
    assert zombies_of(os.getpid()) == []


def test_finish_wakes_a_pending_read_and_write(run):
    async def go(m):
        p = await sh(m, "sleep 30", stdin=procs.PIPE)
        reader = asyncio.ensure_future(p.read())
        writer = asyncio.ensure_future(p.write(b"x" * (1 << 20)))
        await asyncio.sleep(0.05)
        p.finish(kill=True)
        data = await reader
        with pytest.raises(BrokenPipeError):
            await writer
        await p.wait()
        return data
    assert run(go) == b""


def test_read_nowait(run):
    async def go(m):
        p = await sh(m, "sleep 0.2; printf done")
        first = p.read_nowait()
        await p.wait()
        rest = p.read_nowait(), p.read_nowait()
        p.finish()
        return first, rest
    assert run(go) == (None, (b"done", b""))


def test_chatty_stderr_does_not_block_the_child(run):
    # 1 MB on stderr before any stdout: far more than a pipe holds, so the
    # child finishes only if stderr is drained while we wait on stdout.
    async def go(m):
        got = []
        p = await sh(m, "head -c 1000000 /dev/zero | tr '\\0' x >&2; echo done",
                     on_stderr=got.append)
        out = await read_all(p)
        p.finish()
        await p.wait()
        return out, sum(map(len, got))
    assert run(go) == (b"done\n", 1000000)


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_children_run_as_other_credentials(run):
    """creds: the child runs as that uid, gid and groups, in its own process
    group with default signals, and is reaped by procs, not by subprocess."""
    async def go(m):
        p = await sh(m, "id -u; id -g; id -G; ps -o pgid= -p $$; "
                        "grep SigIgn /proc/$$/status", stdin=procs.PIPE)
        out = await read_all(p)
        p.finish()
        return p.pid, await p.wait(), out.decode().split("\n")
    pid, code, lines = run(go, 4, 4, (65534, 65534, (65534, 100)))
    assert code == 0
    assert lines[:3] == ["65534", "65534", "65534 100"]
    assert int(lines[3]) == pid                              # its own group
    assert lines[4].split() == ["SigIgn:", "0000000000000000"]   # SIGPIPE not ignored


@pytest.mark.skipif(os.geteuid() != 0, reason="switching users needs root")
def test_other_credentials_exec_failure_is_oserror(run, tmp_path):
    script = tmp_path / "private.sh"          # tmp_path is root's alone
    script.write_text("#!/bin/sh\necho no\n")
    script.chmod(0o700)

    async def go(m):
        with pytest.raises(OSError):
            await m.spawn(str(script), ["private.sh"], ENV, "/")
        return len(m.running), m.slots.active
    assert run(go, 4, 4, (65534, 65534, ())) == (0, 0)


def test_finish_after_an_unseen_exit_unregisters_the_pidfd(run):
    """A second wait() finds the exit through waitid before the loop ran the
    pidfd's callback; finish() then reaps: the pidfd must leave the loop
    (its number is reused) and the first waiter must still wake."""
    async def go(m):
        errors = []
        asyncio.get_running_loop().set_exception_handler(lambda loop, ctx: errors.append(ctx))
        p = await sh(m, "exit 4")
        first = asyncio.ensure_future(p.wait())
        await asyncio.sleep(0)          # the pidfd is now watched
        time.sleep(0.3)                 # the child exits; the loop has not looked
        assert await p.wait() == 4      # seen by waitid, not by the callback
        p.finish()                      # reaped now
        code = await asyncio.wait_for(first, 5)
        await asyncio.sleep(0.05)       # a stale callback would run here
        return code, errors
    code, errors = run(go)
    assert code == 4 and errors == []


def test_guard_kills_the_groups_still_listed_when_its_lifeline_breaks():
    """flashplug.guard, alone: a table of one slot grows to three; closing
    the lifeline (what a dying worker does) kills every listed group, and
    only those."""
    from flashplug import guard
    table = guard.Table(1)

    def sleeper():
        return os.posix_spawn("/bin/sleep", ["sleep", "30"], ENV, setpgroup=0)

    listed = [sleeper() for _ in range(3)]
    cleared = sleeper()
    slots = [table.add(pid) for pid in listed + [cleared]]
    table.remove(slots[-1])
    table.close()
    for pid in listed:
        assert os.waitpid(pid, 0)[1] == signal.SIGKILL
    assert os.waitpid(cleared, os.WNOHANG) == (0, 0)  # not listed: still running
    os.kill(cleared, signal.SIGKILL)
    os.waitpid(cleared, 0)


def test_stderr_text_escapes_what_a_terminal_would_act_on():
    from flashplug.procs import stderr_text
    assert stderr_text(b"plain\ttext \xc3\xa9") == "plain\ttext \u00e9"
    assert stderr_text(b"a\rb\x1b[31m\x00\x7f") == r"a\x0db\x1b[31m\x00\x7f"
    assert stderr_text(b"\xc2\x9b2J \xff") == r"\x9b2J \xff"      # C1 CSI; not UTF-8
