"""``python -m video_gn.plan``: the same as ``video-gn plan``."""

import sys

from video_gn.plan.cli import main

sys.exit(main())
