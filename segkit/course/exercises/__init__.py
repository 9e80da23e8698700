"""Self-checking exercises for the course notebooks.

    from segkit.course.exercises import check
    check("iou_from_confusion", my_iou)      # prints "✅ iou_from_confusion: 12/12 cases agree" or a hint

checker.py   Exercise, register, check, allclose: the framework
s01.py ...   the exercises of each session, registered when their module is imported (just below)
"""

# Importing a session module registers its exercises.
from segkit.course.exercises import s01, s02, s03, s04, s05, s06, s07, s08, s08b, s09  # noqa: F401
from segkit.course.exercises.checker import (
    EXERCISES,
    Exercise,
    Verdict,
    allclose,
    check,
    get_exercise,
    register,
    run_checks,
)

__all__ = ["EXERCISES", "Exercise", "Verdict", "allclose", "check", "get_exercise", "register", "run_checks"]
