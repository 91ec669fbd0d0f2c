"""Graph convolutions, one per file."""

from bingnn.nn.conv.bin_edge_conv import BinEdgeConv
from bingnn.nn.conv.edge_conv import EdgeConv
from bingnn.nn.conv.xor_edge_conv import XorEdgeConv

__all__ = ["BinEdgeConv", "EdgeConv", "XorEdgeConv"]
