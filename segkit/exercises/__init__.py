"""Self-checking exercises for the course notebooks.

    from segkit.exercises import check
    check("iou_from_confusion", my_iou)      # prints "✅ iou_from_confusion: 12/12 cases agree" or a hint

checker.py   Exercise, register, check, allclose: the framework
s01.py ...   the exercises of each session, registered when their module is imported (just below)
"""

from segkit.exercises import s01, s02, s03, s04, s07, s08, s09  # noqa: F401  (importing registers their exercises)
from segkit.exercises.checker import EXERCISES, Exercise, allclose, check, get_exercise, register

__all__ = ["EXERCISES", "Exercise", "allclose", "check", "get_exercise", "register"]
