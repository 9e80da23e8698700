"""segkit.search: architecture search (issue 7, session 8b). Import the modules you need, e.g.
``from segkit.search.space import sample``; nothing is imported here, so each part loads only its own
dependencies.

    space.py        EncDec search spaces (after EncDecMeta): sampling, Optuna suggestions, validation, size
    asha.py         asynchronous successive halving over such a space with Optuna and the segkit Trainer
    cli.py          `segkit search CONFIG --trials N --workers K`
    autodeeplab/    Auto-DeepLab: hierarchical, differentiable search
"""
