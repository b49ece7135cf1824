"""``python -m video_gn.sweep``: the same as ``video-gn sweep``."""

import sys

from video_gn.sweep.cli import main

sys.exit(main())
