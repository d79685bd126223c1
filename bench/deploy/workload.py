#!/usr/bin/env python3
"""Writes the benchmark's app into DIR: app.py (exits 0 at once) and ~600 KB of data files of
pseudo-random bytes from a fixed seed (incompressible, so the .tar.gz stays ~600 KB).
The same bytes every time: the workload is deterministic.
    workload.py DIR
"""
import os
import random
import sys

SEED = 20261122
FILES = 6
SIZE = 100 * 1024

out = sys.argv[1]
os.makedirs(os.path.join(out, "data"), exist_ok=True)
rng = random.Random(SEED)
for i in range(FILES):
    with open(os.path.join(out, "data", f"blob_{i:02}.bin"), "wb") as f:
        f.write(rng.randbytes(SIZE))
with open(os.path.join(out, "app.py"), "w") as f:
    f.write(
        "# The benchmark's build step: check the release is complete, exit 0.\n"
        "import os, sys\n"
        "here = os.path.dirname(os.path.abspath(__file__))\n"
        f"sys.exit(0 if len(os.listdir(os.path.join(here, 'data'))) == {FILES} else 1)\n"
    )
