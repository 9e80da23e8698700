"""pytest runs the notebooks with nbval (`--nbval-lax`, set in pyproject.toml): every cell must run without
an error; outputs are not compared.

The kernels inherit this process's environment, so set it here, before the first kernel starts:
quick mode (the shapes dataset and tiny sizes, see segkit.course) and a matplotlib backend without windows.
A value already set wins (e.g. SEGKIT_QUICK=0 pytest notebooks runs them in full).
"""

import os

os.environ.setdefault("SEGKIT_QUICK", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
# Idle OpenMP threads sleep instead of spinning (2-core machines: the kernel and pytest share the CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
