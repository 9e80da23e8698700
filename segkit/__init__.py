"""segkit: a teaching toolkit for semantic segmentation."""

import os

# Idle OpenMP threads sleep instead of spinning. On a laptop with few cores that also runs a browser (or a
# second notebook), spinning threads that wait for a busy core can slow training steps many times over; on
# an idle machine the difference is negligible. A value the user set is kept. It only takes effect when
# segkit is imported before torch (the `segkit` command always is).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
