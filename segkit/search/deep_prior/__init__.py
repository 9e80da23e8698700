"""Deep priors (after DP-NAS, Mundt et al. 2021): random-weight encoders scored by a trained linear head.

Import what you need from its module; nothing is imported here. The networks themselves (architecture
strings, RandomEncoder, LinearHead, DeepPriorModel) live on the ground floor, in segkit.models.deep_prior.

    embeddings.py   ProbeData (train/val at a fixed size), features cached on disk by (arch, seed, data),
                    store_embeddings: the --store-embeddings export (.npy + ids + JSON)
    probe.py        fit / evaluate, score_architecture: head on cached embeddings -> val mIoU (the reward)
    metaqnn.py      epsilon-greedy tabular Q-learning over arch strings, replay buffer, a CSV log that resumes
    experiments.py  the paper's three hypotheses: compare_architectures, compare_seeds, train_whole_network

    from segkit.search.deep_prior.embeddings import ProbeData
    from segkit.search.deep_prior.experiments import compare_architectures, results_table

    data = ProbeData(root="data/shapes", image_size=64)
    print(results_table(compare_architectures(data, ["[]", "[C(16,3,1,1,0), P(2,2), C(32,3,1,1,1)]"])))
"""
