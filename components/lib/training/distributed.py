"""One process or many: the device, the rank, and the few collective calls the trainer needs.

Under `torchrun --nproc_per_node N`, each process trains on its share of every global batch and
DistributedDataParallel averages gradients (NCCL on GPUs, gloo on CPU). Alone, it is a no-op.

Several nodes: Kubeflow Trainer's torch plugin (pkg/runtime/framework/plugins/torch/torch.go,
EnforceMLPolicy) gives each node's container PET_NNODES, PET_NPROC_PER_NODE, PET_NODE_RANK (the
pod's completion index), PET_MASTER_ADDR (node 0's pod) and PET_MASTER_PORT, and nothing else: they
are torchrun's own defaults for its flags (torch/distributed/argparse_util.py, `env`), so train
relaunches itself under torchrun without `--standalone` and torchrun joins the nodes.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from components.lib.errors import UserError

NODES_VARIABLE = "PET_NNODES"
NPROC_PER_NODE_VARIABLE = "PET_NPROC_PER_NODE"


def node_count() -> int:
    """The nodes this training spans, from PET_NNODES ("2", or torchrun's elastic "1:2", whose upper bound
    counts); 1 without it."""
    value = os.environ.get(NODES_VARIABLE, "1").strip()
    upper = value.rpartition(":")[2]
    if not upper.isdigit() or int(upper) < 1:
        raise UserError(f"{NODES_VARIABLE}={value!r}: not a node count (a number, or min:max); Kubeflow Trainer sets it from numNodes")
    return int(upper)


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @classmethod
    def from_environment(cls) -> Distributed:
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
        if cuda:
            torch.cuda.set_device(device)
        if world_size > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(minutes=30))
        return cls(rank=int(os.environ.get("RANK", "0")), world_size=world_size, device=device)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        if not self.enabled:
            return model
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def sum(self, value: float) -> float:
        if not self.enabled:
            return value
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(tensor)
        return float(tensor.item())

    def any(self, flag: bool) -> bool:
        return self.sum(1.0 if flag else 0.0) > 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized():
            dist.destroy_process_group()
