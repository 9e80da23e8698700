"""Auto-DeepLab (Liu et al. 2019, "Auto-DeepLab: Hierarchical Neural Architecture Search for Semantic Image
Segmentation", arXiv:1901.02985), small enough for a CPU and the shapes dataset.

Two levels are searched at once by a continuous relaxation: the cell (which operators connect which
states, alpha) and the network (at which output stride each layer works, beta).

    cell.py     SearchCell: every edge a softmax(alpha)-weighted MixedOp
    network.py  AutoDeepLabSearch: stem, trellis of L layers over strides 4/8/16/32, ASPP per level, summed
    search.py   search / BilevelSearch: weights on trainA (SGD), alpha and beta on trainB (Adam), first order
    decode.py   decode_cell, decode_path (Viterbi), build_decoded_model

The operators, the decoded cell and the decoded network (AutoDeepLab, registered as the model
"autodeeplab") live on the ground floor, in segkit.models.autodeeplab; this package builds on them.

    network = AutoDeepLabSearch(num_classes=21, num_layers=4, num_blocks=3, filter_multiplier=4,
                                stem_channels=16, aspp_channels=16)
    history = search(network, train_dataset, epochs=4, warmup_epochs=2, batch_size=4)
    print(format_genotype(decode_cell(network.alpha)))
    print(draw_path(decode_path(network.beta)))
    model = build_decoded_model(network)        # a plain nn.Module for segkit's Trainer

What this version keeps: the operators, the relaxed cell and trellis, beta softmax over each node's
outgoing moves, ASPP per level summed, the first-order alternation on trainA / trainB after a warm-up,
and the paper's decoding rules. What it leaves out or changes: the sizes (paper F = 8, B = 5, L = 12 on
321 x 321 crops, about 3 GPU-days), DARTS' affine-free BatchNorm and its extra BatchNorm after pooling
in the mixed op, the strided / upsampling preprocessing of cell inputs in the reference code (resized
bilinearly here), and the retraining recipe of the decoded model (a DeepLabv3+ decoder, a long schedule,
a larger ASPP).
"""

from segkit.models.autodeeplab.cell import DiscreteCell, cell_edges, num_edges
from segkit.models.autodeeplab.network import LEVEL_STRIDES, AutoDeepLab, draw_path, format_genotype
from segkit.models.autodeeplab.ops import OP_NAMES, OPS, MixedOp

from .cell import SearchCell
from .decode import build_decoded_model, decode_cell, decode_path, path_probability
from .network import AutoDeepLabSearch, beta_probabilities
from .search import BilevelSearch, SearchHistory, search, search_space_size, split_train

__all__ = [
    "LEVEL_STRIDES",
    "OPS",
    "OP_NAMES",
    "AutoDeepLab",
    "AutoDeepLabSearch",
    "BilevelSearch",
    "DiscreteCell",
    "MixedOp",
    "SearchCell",
    "SearchHistory",
    "beta_probabilities",
    "build_decoded_model",
    "cell_edges",
    "decode_cell",
    "decode_path",
    "draw_path",
    "format_genotype",
    "num_edges",
    "path_probability",
    "search",
    "search_space_size",
    "split_train",
]
