"""Hold many idle keep-alive connections open against a server.

Theory of operation: each connection sends one GET, reads the whole
response, and then stays open doing nothing, which is what a browser's
parked connection costs a server. Connections are opened a few hundred at
a time; opening stops when all are done, when none has completed for a few
seconds, or after 45 s in all (a server that serves one connection per
process, or starts a thread per connection, stalls here); then the client
prints `ready OK FAILED`. Afterwards, each `check` line on stdin is
answered with `alive N`: how many of those connections the server has not
closed. EOF on stdin ends it.

Usage: python idle_clients.py PORT COUNT PATH
"""

import asyncio
import resource
import sys

PARALLEL = 256
STALL = 3.0       # seconds without a new connection completing
DEADLINE = 45.0   # seconds for opening them all, whatever the progress


async def one(port: int, path: str, sem: asyncio.Semaphore, held: list) -> None:
    async with sem:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
        held.append((reader, writer))


async def main() -> None:
    port, count, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    sem = asyncio.Semaphore(PARALLEL)
    held: list = []
    tasks = [asyncio.ensure_future(one(port, path, sem, held)) for _ in range(count)]
    loop = asyncio.get_running_loop()
    last, last_change = 0, loop.time()
    give_up = loop.time() + DEADLINE
    while not all(t.done() for t in tasks) and loop.time() < give_up:
        await asyncio.sleep(0.2)
        if len(held) != last:
            last, last_change = len(held), loop.time()
        elif loop.time() - last_change > STALL:
            break
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"ready {len(held)} {count - len(held)}", flush=True)
    while line := await loop.run_in_executor(None, sys.stdin.readline):
        if line.strip() == "check":
            await asyncio.sleep(0.1)
            print(f"alive {sum(not r.at_eof() for r, _ in held)}", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
