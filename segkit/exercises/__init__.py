"""Self-checking exercises for the course notebooks.

    from segkit.exercises import check
    check("iou_from_confusion", my_iou)      # prints "✅ iou_from_confusion: 12/12 cases agree" or a hint

checker.py   Exercise, register, check, allclose: the framework
s01.py ...   the exercises of each session, registered when their module is imported (just below)
"""

from segkit.exercises import s07  # noqa: F401  (importing a session module registers its exercises)
from segkit.exercises.checker import EXERCISES, Exercise, allclose, check, get_exercise, register

__all__ = ["EXERCISES", "Exercise", "allclose", "check", "get_exercise", "register"]
