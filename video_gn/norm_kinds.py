"""The normalisation kinds, in a module without imports so torch-free tools (``video-gn sweep``) can use them."""

#: Every kind :func:`video_gn.nn.make_norm` builds (``"ln"`` = GroupNorm with one group, ``"in"`` = one group per
#: channel, ``"none"`` = identity).
NORM_KINDS: tuple[str, ...] = ("bn", "syncbn", "frozen_bn", "gn", "ln", "in", "none")
