"""Layers of binary GNNs: quantizers, binary linear/blocks, k-NN and graph convolutions."""

from bingnn.nn import quantizers
from bingnn.nn.activations import ChannelPReLU
from bingnn.nn.binary_block import BinaryBlock
from bingnn.nn.binary_linear import BinaryLinear
from bingnn.nn.centering import ChannelBatchNorm, MeanCenter, MedianCenter, get_centering
from bingnn.nn.conv import BinEdgeConv, BinGCNConv, BinSAGEConv, EdgeConv, XorEdgeConv
from bingnn.nn.edge_features import edge_features
from bingnn.nn.knn import gather_neighbors, knn, knn_edge_index, pairwise_distance
from bingnn.nn.rescale import LearnedRescale

__all__ = [
    "BinEdgeConv",
    "BinGCNConv",
    "BinSAGEConv",
    "EdgeConv",
    "XorEdgeConv",
    "quantizers",
    "BinaryBlock",
    "BinaryLinear",
    "ChannelBatchNorm",
    "ChannelPReLU",
    "LearnedRescale",
    "MeanCenter",
    "MedianCenter",
    "edge_features",
    "gather_neighbors",
    "get_centering",
    "knn",
    "knn_edge_index",
    "pairwise_distance",
]
