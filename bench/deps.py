"""Install what the benchmark needs, once.

Theory of operation: every dependency is checked before anything is
installed, so a second run does nothing. The servers and the load generator
come from apt (Debian's `nginx-light`, `lighttpd`, `wrk`); the Python pieces
(aiohttp for the comparison server, matplotlib for the plots) go into the
interpreter that runs the harness, which is meant to be the project's venv.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys

APT = {"nginx": "nginx-light", "lighttpd": "lighttpd", "wrk": "wrk", "taskset": "util-linux"}
PIP = {"aiohttp": "aiohttp", "matplotlib": "matplotlib"}


def missing_programs() -> list[str]:
    return [pkg for prog, pkg in APT.items() if shutil.which(prog) is None and not _in_sbin(prog)]


def _in_sbin(prog: str) -> bool:
    # nginx and lighttpd live in /usr/sbin, which a non-root PATH may lack.
    return shutil.which(prog, path="/usr/sbin:/sbin") is not None


def missing_modules() -> list[str]:
    return [pkg for mod, pkg in PIP.items() if importlib.util.find_spec(mod) is None]


def ensure(log=print) -> None:
    """Install whatever is missing; raise CalledProcessError if that fails."""
    pkgs = missing_programs()
    if pkgs:
        log(f"installing with apt-get: {' '.join(pkgs)}")
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        if subprocess.run(["apt-get", "install", "-y", *pkgs], env=env).returncode != 0:
            subprocess.run(["apt-get", "update"], env=env, check=True)
            subprocess.run(["apt-get", "install", "-y", *pkgs], env=env, check=True)
    mods = missing_modules()
    if mods:
        log(f"installing with pip into {sys.prefix}: {' '.join(mods)}")
        subprocess.run([sys.executable, "-m", "pip", "install", *mods], check=True)
        importlib.invalidate_caches()


def program(name: str) -> str:
    """Absolute path of an installed program, looking in sbin too."""
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin")
    if found is None:
        raise FileNotFoundError(name)
    return found
