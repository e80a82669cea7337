import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
# CPU tests are small; two threads match the CI machine and keep runs reproducible.
torch.set_num_threads(min(2, torch.get_num_threads()))
