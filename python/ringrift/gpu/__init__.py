"""GPU self-play: the shared rules core as a CUDA kernel, compiled at run time by NVRTC via cupy.

``gpu_available()`` says whether this machine can run it; ``gpu_status()`` says why not.
"""

from .device import (GPU_BATCH, GpuUnavailable, gpu_available, gpu_status, require_gpu, selfplay_batch_gpu,
                     selfplay_gpu, slots_to_batch)

__all__ = ["GPU_BATCH", "GpuUnavailable", "gpu_available", "gpu_status", "require_gpu", "selfplay_batch_gpu",
           "selfplay_gpu", "slots_to_batch"]
