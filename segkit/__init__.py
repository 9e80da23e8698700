"""segkit: a teaching toolkit for semantic segmentation."""
__version__ = "0.1.0"
