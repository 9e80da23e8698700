"""The network an Auto-DeepLab search decodes to (Liu et al. 2019, arXiv:1901.02985).

    ops.py      the 8 cell operators (none, 3x3 max/avg pool, skip, 3x3/5x5 separable, 3x3/5x5 atrous rate 2)
                and MixedOp, their softmax-weighted sum
    cell.py     blocks and edges of a cell, genotypes, DiscreteCell (a decoded cell)
    network.py  AutoDeepLab: stem, one discrete cell per layer along a path of strides, ASPP; registered in
                segkit.models as "autodeeplab"

The search itself (the relaxed network, the bilevel optimisation, decoding alpha and beta) is in
segkit.search.autodeeplab, which builds on these modules.
"""
