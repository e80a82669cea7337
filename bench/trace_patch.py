"""Shared by trace_fwd.py / trace_bwd.py: copy a tree's csrc/ and insert trace marks into one kernel
header by exact-text anchors (each must occur exactly once, else the script stops)."""
import shutil
import sys
from pathlib import Path


def instrument(tree, out, header, anchors):
    """Copies TREE/csrc to OUT/csrc and applies (old, new) replacements to OUT/csrc/HEADER."""
    tree, out = Path(tree), Path(out)
    shutil.rmtree(out / "csrc", ignore_errors=True)
    shutil.copytree(tree / "csrc", out / "csrc")
    kernel = out / "csrc" / header
    src = kernel.read_text()
    for old, new in anchors:
        if src.count(old) != 1:
            sys.exit(f"anchor not found once in {kernel}:\n{old}")
        src = src.replace(old, new)
    kernel.write_text(src)
    print(f"instrumented {kernel}")
