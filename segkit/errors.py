"""The one error class for expected stops that a person can act on.

    StopError   training diverged, the disk is full, the run folder is in use, the study database refused
                the connection, ...

Its message is complete on one line (what happened, the file or key at fault, what to do), so the command
line prints it as ``segkit: error: <message>`` without a traceback. Bad input keeps its own classes
(ValueError, segkit.config.ConfigError, FileNotFoundError), which the command line reports the same way.

This module imports nothing, so the command line can catch the class without importing torch.
"""

from __future__ import annotations


class StopError(RuntimeError):
    """A run or a search stopped for a reason a person can act on; the message says which and what to do."""
