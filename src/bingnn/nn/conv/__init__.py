"""Graph convolutions, one per file."""

from bingnn.nn.conv.bin_edge_conv import BinEdgeConv
from bingnn.nn.conv.bin_gcn_conv import BinGCNConv
from bingnn.nn.conv.bin_sage_conv import BinSAGEConv
from bingnn.nn.conv.edge_conv import EdgeConv
from bingnn.nn.conv.xor_edge_conv import XorEdgeConv

__all__ = ["BinEdgeConv", "BinGCNConv", "BinSAGEConv", "EdgeConv", "XorEdgeConv"]
