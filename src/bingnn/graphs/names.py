"""Names of the node-classification data sets (no PyTorch import, so the command line can list
them without loading the training stack)."""

#: Planetoid data set -> the name PyTorch Geometric's loader and the raw files use.
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
#: OGB node property prediction data sets.
OGB_NODE = ("ogbn-arxiv", "ogbn-products", "ogbn-proteins")
NODE_DATASETS = (*PLANETOID, *OGB_NODE)
