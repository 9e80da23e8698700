"""segkit: a teaching toolkit for semantic segmentation."""

import os

# Idle OpenMP threads sleep instead of spinning. On a 2-core laptop that is also running a browser (or a
# second notebook), spinning threads made the demo's training steps 25 times slower; on an idle machine
# the difference is negligible. A value the user set is kept. It only takes effect when segkit is imported
# before torch (the `segkit` command always is).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
