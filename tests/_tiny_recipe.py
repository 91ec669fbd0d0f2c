"""A cascade small enough for unit tests (seconds on a CPU)."""

TINY_RECIPE = """
name = "tiny"
variants = ["rf"]
[data]
dataset = "synthetic"
num_points = 32
train_samples = 24
test_samples = 12
[model]
k = 4
widths = [8, 8, 8, 8]
emb_dims = 16
mlp = [16, 8]
[stage0]
epochs = 1
batch_size = 8
test_batch_size = 12
[stage1]
epochs = 2
batch_size = 8
test_batch_size = 12
[stage2]
epochs = 1
batch_size = 8
test_batch_size = 12
[stage3]
epochs = 1
batch_size = 8
test_batch_size = 12
"""


def write_tiny(path, extra: str = "") -> str:
    path.write_text(TINY_RECIPE + extra)
    return str(path)
