"""Coverage-guided fuzzing of the sans-I/O parts with atheris (libFuzzer).

Usage (from the repository root, ``pip install atheris`` first)::

    python bench/fuzz/fuzz.py TARGET [libFuzzer options]
    python bench/fuzz/fuzz.py paths -runs=1000000
    python bench/fuzz/fuzz.py paths --keep      # merge what a run found into the kept corpus
    python bench/fuzz/fuzz.py --replay          # the kept corpus, no atheris

TARGET is one of ``targets.TARGETS`` (ranges, conditionals, paths, cgi,
accept).  The kept corpus ``bench/fuzz/corpus/TARGET/`` seeds the run; new
inputs the fuzzer finds go to a scratch directory (``$FUZZ_WORK``, default
``/tmp/flashplug-fuzz/TARGET``), so a run does not grow the repository.
Crashes are written as ``crash-*`` files in the current directory.
``--keep`` merges the scratch directory into the kept corpus with
libFuzzer's ``-merge=1``, which adds only inputs that reach new coverage, so
the kept corpus stays small.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def replay():
    """Run every kept corpus input through its target (no fuzzer needed)."""
    import targets
    count = 0
    for name, target in targets.TARGETS.items():
        folder = os.path.join(HERE, "corpus", name)
        for entry in sorted(os.listdir(folder)):
            with open(os.path.join(folder, entry), "rb") as f:
                target(f.read())
            count += 1
    print(f"{count} corpus inputs replayed, no failure")


def main():
    if sys.argv[1:2] == ["--replay"]:
        return replay()
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        sys.exit("usage: fuzz.py TARGET [libFuzzer options] | fuzz.py --replay")
    name = sys.argv[1]
    import atheris
    with atheris.instrument_imports():
        import targets
    if name not in targets.TARGETS:
        sys.exit(f"fuzz.py: unknown target {name!r}; one of {', '.join(targets.TARGETS)}")
    work = os.path.join(os.environ.get("FUZZ_WORK", "/tmp/flashplug-fuzz"), name)
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(HERE, "corpus", name)
    target = targets.TARGETS[name]
    rest = sys.argv[2:]
    if rest == ["--keep"]:
        # libFuzzer merges in a child it starts through the shell with
        # argv[0] as the command: give it one that runs this target again.
        again = f"{sys.executable} {os.path.abspath(__file__)} {name} --merge-child"
        atheris.Setup([again, "-merge=1", corpus, work], target)
    elif rest[:1] == ["--merge-child"]:
        atheris.Setup([sys.argv[0], *rest[1:]], target)
    else:
        atheris.Setup([sys.argv[0], *rest, work, corpus], target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
