"""graddesc.backends.cudnn: no cuDNN. The flags scripts set for reproducibility
(`deterministic = True`, `benchmark = False`) are accepted: graddesc's kernels are always
deterministic (bitwise equal results for any thread count)."""

enabled = False
deterministic = False
benchmark = False


def is_available() -> bool:
    return False
