"""Generate the one document root every server under test serves.

Theory of operation: the tree is written once per run into a temporary
directory and then flushed to disk (`os.sync`), because `POSIX_FADV_DONTNEED`
cannot drop dirty pages; only clean pages can be kept out of the page cache.

    1k.bin 100k.bin 1m.bin   workload (a): one cached file per size
    set/NNNNN.bin            workload (b): 10,000 files, SPECweb96-like sizes
    disk/NNNN.bin            workload (c): 4,000 files of 256 KiB (1 GiB)
    cgi-bin/hello.sh|.py     workload (e)

Request lists for wrk's Lua scripts are written beside the tree (not inside
it): for (b) a sample of paths drawn from a Zipf distribution over the set,
with popularity rank shuffled against size so popular files are not all
small; for (c) the plain list, which the script picks from uniformly.
"""

from __future__ import annotations

import os
import random
import stat
from dataclasses import dataclass
from pathlib import Path

SINGLE = {"1k": 1024, "100k": 100 * 1024, "1m": 1024 * 1024}

# SPECweb96's four size classes and their shares of requests/files: the
# classic mix of the Flash paper's era.
SIZE_CLASSES = [(100, 1024, 0.35), (1024, 10240, 0.50), (10240, 102400, 0.14), (102400, 921600, 0.01)]
ZIPF_ALPHA = 0.8   # web traces measure 0.64-0.83 (Breslau et al., 1999)
ZIPF_SAMPLES = 200_000


@dataclass
class Docroot:
    root: Path
    zipf_list: Path      # one URL path per line, Zipf-distributed sample
    disk_list: Path      # one URL path per line, the disk-bound set
    disk_files: list[Path]
    set_bytes: int
    disk_bytes: int


def _fill(path: Path, size: int, block: bytes, tag: int) -> None:
    # A per-file tag in front of a shared block keeps every body distinct
    # without paying for a gigabyte of os.urandom.
    head = tag.to_bytes(8, "big")
    with open(path, "wb") as f:
        left = size
        first = True
        while left > 0:
            chunk = (head + block) if first else block
            first = False
            f.write(chunk[:left])
            left -= min(left, len(chunk))


def zipf_sample(n_items: int, n_samples: int, alpha: float, rng: random.Random) -> list[int]:
    """Indices 0..n_items-1 drawn with P(rank r) proportional to 1/r**alpha."""
    weights = [1.0 / (r ** alpha) for r in range(1, n_items + 1)]
    return rng.choices(range(n_items), weights=weights, k=n_samples)


def set_sizes(n: int, rng: random.Random) -> list[int]:
    sizes = []
    for lo, hi, share in SIZE_CLASSES:
        sizes += [rng.randint(lo, hi) for _ in range(round(n * share))]
    sizes += [1024] * (n - len(sizes))
    rng.shuffle(sizes)
    return sizes[:n]


def generate(base: Path, n_set: int = 10_000, n_disk: int = 4000, disk_size: int = 256 * 1024,
             seed: int = 6) -> Docroot:
    rng = random.Random(seed)
    root = base / "root"
    for sub in ("set", "disk", "cgi-bin"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    block = rng.randbytes(1024 * 1024)
    for i, (name, size) in enumerate(SINGLE.items()):
        _fill(root / f"{name}.bin", size, block, i)

    sizes = set_sizes(n_set, rng)
    for i, size in enumerate(sizes):
        _fill(root / "set" / f"{i:05d}.bin", size, block, 100 + i)
    order = list(range(n_set))
    rng.shuffle(order)   # rank -> file, independent of size
    zipf_list = base / "zipf-paths.txt"
    zipf_list.write_text("".join(f"/set/{order[k]:05d}.bin\n"
                                 for k in zipf_sample(n_set, ZIPF_SAMPLES, ZIPF_ALPHA, rng)))

    disk_files = []
    for i in range(n_disk):
        p = root / "disk" / f"{i:04d}.bin"
        _fill(p, disk_size, block, 100_000 + i)
        disk_files.append(p)
    disk_list = base / "disk-paths.txt"
    disk_list.write_text("".join(f"/disk/{p.name}\n" for p in disk_files))

    _write_cgi(root / "cgi-bin")
    os.sync()
    # Servers may drop privileges (nginx workers run as nobody by default).
    for d in (base, root):
        d.chmod(0o755)
    return Docroot(root, zipf_list, disk_list, disk_files, sum(sizes), n_disk * disk_size)


def _write_cgi(cgi: Path) -> None:
    py = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else "/usr/bin/env python3"
    scripts = {
        "hello.sh": "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\nhello from sh\\n'\n",
        "hello.py": f"#!{py}\nimport sys\nsys.stdout.write('Content-Type: text/plain\\r\\n\\r\\nhello from python\\n')\n",
    }
    for name, text in scripts.items():
        p = cgi / name
        p.write_text(text)
        p.chmod(p.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
