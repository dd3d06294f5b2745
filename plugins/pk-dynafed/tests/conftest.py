"""Tests share 2 CPU cores with other jobs: one torch thread avoids oversubscription."""

import torch

torch.set_num_threads(1)
