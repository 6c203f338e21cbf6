"""The CLI keeps freed tensor memory mapped: a training-sized buffer freed and allocated again
faults its pages in a few times at most, not every time (allocator.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ROUNDS = 40
PROBE = f"""
import resource, sys
import torch
if sys.argv[1] == "cli":  # the console script's entry point, as `factory --version` runs it
    from factory.cli import main
    sys.argv = ["factory", "--version"]
    try:
        main.run()
    except SystemExit:
        pass
torch.ones(1)  # load everything first
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range({ROUNDS}):
    x = torch.ones(8 << 20)  # 32 MiB, as large as a batch's activations
    del x
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PAGES = (32 << 20) // 4096  # one buffer's 4 KiB pages


def faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_the_cli_reuses_freed_buffers_without_faulting_them_in_again() -> None:
    assert faults("plain") > (ROUNDS - 5) * PAGES  # glibc hands each one back, faults it anew
    assert faults("cli") < 8 * PAGES  # a few rounds until the heap holds it, then reused
