"""Single place where video_gn imports pytorchvideo.

pytorchvideo 0.1.5 decorates several helpers with ``torch.jit.script`` at import time, and
recent torch releases deprecate that with a ``FutureWarning``. We silence exactly that warning,
only while pytorchvideo is being imported, instead of filtering it process-wide.
Import pytorchvideo modules from here (``from video_gn._pytorchvideo import ptv_resnet``).
"""

import warnings

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
    import pytorchvideo.data as ptv_data  # noqa: F401
    import pytorchvideo.data.clip_sampling as ptv_clip_sampling  # noqa: F401
    import pytorchvideo.data.labeled_video_paths as ptv_labeled_video_paths  # noqa: F401
    import pytorchvideo.models.head as ptv_head  # noqa: F401
    import pytorchvideo.models.net as ptv_net  # noqa: F401
    import pytorchvideo.models.resnet as ptv_resnet  # noqa: F401
    import pytorchvideo.models.stem as ptv_stem  # noqa: F401
    from pytorchvideo.models.hub import resnet as ptv_hub_resnet  # noqa: F401

__all__ = [
    "ptv_data",
    "ptv_clip_sampling",
    "ptv_labeled_video_paths",
    "ptv_head",
    "ptv_resnet",
    "ptv_stem",
    "ptv_net",
    "ptv_hub_resnet",
]
