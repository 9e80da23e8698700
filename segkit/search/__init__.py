"""segkit.search: architecture search (session 8b). Import the modules you need, e.g.
``from segkit.search.space import sample``; nothing is imported here, so each part loads only its own
dependencies.

    space.py        EncDec search spaces (after EncDecMeta): sampling, Optuna suggestions, validation, size
    asha.py         asynchronous successive halving over such a space with Optuna and the segkit Trainer
    autodeeplab/    Auto-DeepLab: hierarchical, differentiable search
    deep_prior/     DP-NAS: random-weight encoders scored by a linear probe, MetaQNN search

The searched networks themselves live in segkit.models (encdec, deep_prior, autodeeplab); the commands in
segkit.cli.search and segkit.cli.deep_prior.
"""
