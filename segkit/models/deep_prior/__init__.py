"""Deep priors (DP-NAS, Mundt et al. 2021): networks whose encoder keeps its random weights.

    archstring.py   "[C(16,3,1,1,0), P(2,2)]" <-> layers; spatial sizes and feasibility for an input size
    network.py      RandomEncoder (Kaiming-normal from a seed), LinearHead, HeadOnFeatures,
                    DeepPriorModel(freeze_encoder); `deep_prior`, registered in segkit.models as "deep_prior"

The search over such architectures (cached embeddings, the probe that scores them, MetaQNN) is in
segkit.search.deep_prior; it builds on these modules, never the other way round.
"""
