"""Where the installed package keeps the C++ sources that the GPU path compiles at run time."""

from __future__ import annotations

from pathlib import Path


def include_dir() -> Path:
    """The header root (engine/, selfplay/, export/, search/): installed at ringrift/include, or csrc/ in a checkout."""
    here = Path(__file__).resolve().parent.parent
    installed = here / "include"
    if (installed / "selfplay" / "selfplay_kernel.cu").exists():
        return installed
    checkout = here.parent.parent / "csrc"
    if (checkout / "selfplay" / "selfplay_kernel.cu").exists():
        return checkout
    raise FileNotFoundError(f"ringrift's C++ sources are missing (looked in {installed} and {checkout})")


# kernel source -> its folder under the header root
KERNELS = {"selfplay_kernel.cu": "selfplay", "env_kernel.cu": "selfplay", "search_kernel.cu": "search"}


def kernel_source(name: str = "selfplay_kernel.cu") -> str:
    """The source of one of the shipped kernels (KERNELS), compiled as is by NVRTC."""
    if name not in KERNELS:
        raise ValueError(f"unknown kernel source {name!r} (expected one of {', '.join(KERNELS)})")
    return (include_dir() / KERNELS[name] / name).read_text()


def layout_options() -> tuple:
    """NVRTC options that make a kernel compile fail unless its struct layout equals the
    installed binding's (csrc/selfplay/layout.h): raw bytes cross between the two."""
    from .. import _core

    return ("-DRR_HOST_LAYOUT", *(f"-DRR_HOST_{name}={value}" for name, value in sorted(_core.struct_layout().items())))


def kernel_options(*extra: str) -> tuple:
    """The options every launcher compiles a shipped kernel with: C++17, the header root, the
    layout guard, then `extra`."""
    return ("--std=c++17", f"-I{include_dir()}", *layout_options(), *extra)
