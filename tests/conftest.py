import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
# CPU tests are small; two threads match the CI machine and keep runs reproducible.
torch.set_num_threads(min(2, torch.get_num_threads()))


def pytest_configure(config):
    # `make test` runs these alone after the rest (PYTEST_ARGS such as -n 8 do not apply to them):
    # they need most of the GPU's memory.
    config.addinivalue_line("markers", "serial: needs the whole GPU; run without other workers")
