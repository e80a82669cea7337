"""Installs the build and test dependencies that are missing, and nothing else.

torch: 2.13.0 where pip can get it (the CPU wheel on development and CI machines); any torch >= 2.10
already installed is kept (the GPU machines carry torch 2.11+cu130 and reach no package index).
CUTLASS headers: the pinned nvidia-cutlass==4.2.0.0 package, installed with --no-deps, unless
CUTLASS_DIR or third_party/cutlass provides them.
"""

import importlib.util
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def missing(module):
    return importlib.util.find_spec(module) is None


def pip(*args):
    print("+ pip install", " ".join(args), flush=True)
    subprocess.check_call([sys.executable, "-m", "pip", "install", "-q", *args])


def main():
    if missing("torch"):
        pip("torch==2.13.0")
    for module, package in (("ninja", "ninja"), ("pytest", "pytest"), ("numpy", "numpy")):
        if missing(module):
            pip(package)
    have_cutlass = os.environ.get("CUTLASS_DIR") or os.path.isdir(os.path.join(ROOT, "third_party", "cutlass", "include"))
    if not have_cutlass and missing("cutlass_library"):
        pip("--no-deps", "nvidia-cutlass==4.2.0.0")


if __name__ == "__main__":
    main()
