"""Benchmark CLI of flash_attn4: `python -m flash_attn4.bench --help` (see bench/README.md).

Submodules config, results and report use only the standard library, so they import (and are
unit-tested) without a GPU or the compiled extension.
"""
