"""Course aids: what the notebooks, the student copies and the exercises need, in one sub-package.

    notebook.py   setup_notebook(): the first cell of every notebook (seeds, quick mode, dataset, sizes)
    student.py    student copies of the notebooks, generated from the instructor copies (`segkit student`)
    exercises/    self-checking exercises: check("name", my_function), one module per session
    execute.py    run a notebook in its own kernel with time limits (tests, site, benchmark, grading)
    grading.py    grade submitted notebooks (`segkit grade`): a CSV of points and a feedback file each

    from segkit.course import setup_notebook
    course = setup_notebook()

Names load when first used (segkit.lazy), so `segkit student` does not import torch and `setup_notebook`
does not import nbformat.
"""

from segkit.lazy import lazy_exports

__getattr__, __dir__ = lazy_exports(__name__, {
    "CourseSetup": ".notebook",
    "ensure_shapes": ".notebook",
    "seed_everything": ".notebook",
    "setup_notebook": ".notebook",
})

__all__ = ["CourseSetup", "ensure_shapes", "seed_everything", "setup_notebook"]
