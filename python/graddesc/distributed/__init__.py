"""graddesc.distributed: data-parallel training over MPI, in the shape of torch.distributed.

Start a job with `mpiexec -n N python train.py` (pip install 'graddesc[distributed]' brings
mpi4py and Open MPI); in it, `init_process_group(backend="mpi")`, then wrap the model in
DistributedDataParallel and give each rank its shard with DistributedSampler. mpi4py is
imported only when the process group is initialized: importing this module needs nothing.
See docs/distributed.md.
"""

from graddesc.distributed._group import (
    DistributedError,
    ReduceOp,
    Work,
    all_gather,
    all_gather_into_tensor,
    all_gather_object,
    all_reduce,
    all_reduce_ordered,
    barrier,
    broadcast,
    broadcast_object,
    destroy_process_group,
    get_rank,
    get_world_size,
    init_process_group,
    is_available,
    is_initialized,
    reduce_scatter,
    reduce_scatter_tensor,
    save_checkpoint,
)
from graddesc.distributed.ddp import DistributedDataParallel
from graddesc.distributed.sampler import DistributedSampler

__all__ = [
    "DistributedDataParallel", "DistributedError", "DistributedSampler", "ReduceOp", "Work",
    "all_gather", "all_gather_into_tensor", "all_gather_object", "all_reduce",
    "all_reduce_ordered", "barrier", "broadcast", "broadcast_object", "destroy_process_group",
    "get_rank", "get_world_size", "init_process_group", "is_available", "is_initialized",
    "reduce_scatter", "reduce_scatter_tensor", "save_checkpoint",
]
