"""Helpers shared by the PyTorch reference scripts."""
import resource

import torch


def blas_in_use() -> str:
    """The BLAS library actually mapped into this process (Debian's torch links libblas.so.3)."""
    torch.ones(4, 4) @ torch.ones(4, 4)  # make sure the BLAS is loaded
    with open('/proc/self/maps') as maps:
        libs = {line.split()[-1] for line in maps if 'blas' in line or 'mkl' in line}
    return ', '.join(sorted(libs)) or 'unknown'


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
