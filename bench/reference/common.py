"""Helpers shared by the PyTorch reference scripts."""
import re
import resource

import torch


def blas_in_use() -> str:
    """The CPU BLAS torch was built with (its build config), else the one mapped into this process
    (Debian's torch links libblas.so.3). CUDA builds also map cuBLAS, which the CPU never uses."""
    found = re.search(r'BLAS_INFO=(\w+)', torch.__config__.show())
    if found:
        return f'{found.group(1)} BLAS, oneDNN {"on" if torch.backends.mkldnn.is_available() else "off"}'
    torch.ones(4, 4) @ torch.ones(4, 4)  # make sure the BLAS is loaded
    with open('/proc/self/maps') as maps:
        libs = {line.split()[-1] for line in maps if ('blas' in line or 'mkl' in line) and 'cublas' not in line}
    return ', '.join(sorted(libs)) or 'unknown'


def peak_rss_mb(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux
