"""video_gn: video classification at tiny per-GPU batches.

3D ResNets with pluggable normalisation (BN, SyncBN, frozen BN, GN, GN + Weight
Standardization, LN, IN) on PyTorch Lightning, fed by a PyAV-backed Kinetics loader.
"""

__version__ = "0.1.0"
