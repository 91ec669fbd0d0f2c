"""Names of the node-classification data sets (no PyTorch import, so the command line can list
them without loading the training stack)."""

#: Planetoid data set -> the name PyTorch Geometric's loader and the raw files use.
PLANETOID = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
#: Graphs in the MUSAE release format the node commands train on (``bingnn.graphs.musae``
#: reads more of them: GitHub, Twitch, Deezer Europe, Wikipedia).
MUSAE_NODE = ("facebook",)
#: Geom-GCN's heterophilous graphs, through PyG's loaders.
GEOM_GCN_NODE = ("actor",)
#: OGB node property prediction data sets.
OGB_NODE = ("ogbn-arxiv", "ogbn-products", "ogbn-proteins")
NODE_DATASETS = (*PLANETOID, *MUSAE_NODE, *GEOM_GCN_NODE, *OGB_NODE)
