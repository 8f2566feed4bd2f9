"""The device and the data-parallel process group of a training run (torchrun: gloo on CPU, nccl on CUDA)."""
import os
from dataclasses import dataclass
from typing import List, Sequence

import torch
import torch.distributed as dist


@dataclass
class DistributedContext:
    """This process's place in a data-parallel run (world 1: a single process)."""
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False  # this run started the process group and must end it

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: Sequence[float], device) -> List[float]:
        """`values` summed over all processes (float64)."""
        t = torch.tensor(list(values), dtype=torch.float64, device=device)
        if self.world > 1:
            dist.all_reduce(t)
        return t.tolist()

    def close(self) -> None:
        if self.owns_group:
            dist.destroy_process_group()


def init_distributed(device: torch.device) -> DistributedContext:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return DistributedContext(dist.get_world_size(), dist.get_rank(), int(os.environ.get("LOCAL_RANK", "0")), owns)


def pick_device(name: str) -> torch.device:
    """"auto" -> cuda when available, else cpu; a bare "cuda" under torchrun -> cuda:LOCAL_RANK."""
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local if int(os.environ.get("WORLD_SIZE", "1")) > 1 else 0)
        torch.cuda.set_device(device)
    return device
