"""Balanced sampling across data sets."""
from typing import Sequence

import numpy as np
import torch

class BalancedSampler(torch.utils.data.Sampler):
    """Draws `num_samples` indices per epoch: a data set with probability proportional to its weight,
    then the next sample of that data set's shuffled list (so every sample is seen before any repeats).
    Deterministic for (seed, epoch); with several processes each rank takes every world-th index."""

    def __init__(self, groups: Sequence[int], weights: Sequence[float], num_samples: int, seed: int = 0,
                 rank: int = 0, world: int = 1):
        self.groups = np.asarray(groups, dtype=np.int64)
        self.weights = np.asarray(weights, dtype=np.float64)
        if len(self.weights) == 0 or self.groups.size == 0 or self.groups.max() >= len(self.weights):
            raise ValueError("every sample's data set needs a weight")
        present = np.bincount(self.groups, minlength=len(self.weights)) > 0
        if not np.all(self.weights[present] > 0):
            raise ValueError(f"data set weights must be positive, got {list(self.weights)}")
        self.p = np.where(present, self.weights, 0.0) / np.where(present, self.weights, 0.0).sum()
        self.num_samples = int(num_samples)
        self.seed, self.rank, self.world, self.epoch = seed, rank, world, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.num_samples // self.world)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        members = [rng.permutation(np.nonzero(self.groups == g)[0]) for g in range(len(self.weights))]
        used = [0] * len(members)
        order = []
        for g in rng.choice(len(self.weights), size=len(self) * self.world, p=self.p):
            if used[g] == len(members[g]):
                members[g], used[g] = rng.permutation(members[g]), 0
            order.append(int(members[g][used[g]]))
            used[g] += 1
        return iter(order[self.rank::self.world])
