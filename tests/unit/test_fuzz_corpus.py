"""The kept fuzzing corpus (bench/fuzz/corpus/) replays through every target
without a failure: the seconds-long CI version of the atheris runs."""
import os
import sys

import pytest

FUZZ = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    "bench", "fuzz")
sys.path.insert(0, FUZZ)
import targets  # noqa: E402


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_corpus_replays_clean(name):
    folder = os.path.join(FUZZ, "corpus", name)
    entries = sorted(os.listdir(folder))
    assert entries, f"no corpus kept for {name}"
    for entry in entries:
        with open(os.path.join(folder, entry), "rb") as f:
            targets.TARGETS[name](f.read())
