"""Where the installed package keeps the C++ sources that the GPU path compiles at run time."""

from __future__ import annotations

from pathlib import Path


def include_dir() -> Path:
    """The header root (engine/, selfplay/, export/): installed at ringrift/include, or csrc/ in a checkout."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "include"
    if (installed / "selfplay" / "selfplay_kernel.cu").exists():
        return installed
    checkout = here.parent.parent / "csrc"
    if (checkout / "selfplay" / "selfplay_kernel.cu").exists():
        return checkout
    raise FileNotFoundError(f"ringrift's C++ sources are missing (looked in {installed} and {checkout})")


KERNELS = ("selfplay_kernel.cu", "env_kernel.cu")


def kernel_source(name: str = "selfplay_kernel.cu") -> str:
    """The source of one of the shipped kernels (KERNELS), compiled as is by NVRTC."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel source {name!r} (expected one of {', '.join(KERNELS)})")
    return (include_dir() / "selfplay" / name).read_text()
