import random
import zipfile

import numpy as np
import pytest
import torch

from bingnn.train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)


def _state():
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    model(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    return model, {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": 3,
        "config": {"arch": "dgcnn", "widths": [8, 8], "lr": 1e-3, "name": None},
        "rng": rng_state(),
    }


def test_round_trip(tmp_path):
    model, state = _state()
    p = tmp_path / "sub" / "ck.pt"
    save_checkpoint(p, state)
    got = load_checkpoint(p)
    assert got["epoch"] == 3
    assert got["config"] == state["config"]
    for k, v in model.state_dict().items():
        assert torch.equal(got["model"][k], v)
    opt2 = torch.optim.Adam(torch.nn.Linear(3, 2).parameters(), lr=1.0)
    opt2.load_state_dict(got["optimizer"])
    assert opt2.param_groups[0]["lr"] == state["optimizer"]["param_groups"][0]["lr"]
    # no temporary files left behind
    assert sorted(x.name for x in p.parent.iterdir()) == ["ck.pt"]


def test_rng_round_trip(tmp_path):
    random.seed(1)
    np.random.seed(1)
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "r.pt", {"rng": rng_state()})
    expected = (random.random(), np.random.rand(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    set_rng_state(load_checkpoint(tmp_path / "r.pt")["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


def test_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "nope.pt")


def test_empty_and_truncated(tmp_path):
    _, state = _state()
    p = tmp_path / "ck.pt"
    p.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(p)
    save_checkpoint(p, state)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(p)
    p.write_bytes(b"this is not a checkpoint at all" * 10)
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


def test_corrupt_member(tmp_path):
    """Flip bytes inside the archive's data: the error is still a CheckpointError."""
    _, state = _state()
    p = tmp_path / "ck.pt"
    save_checkpoint(p, state)
    raw = bytearray(p.read_bytes())
    with zipfile.ZipFile(p) as z:
        info = [i for i in z.infolist() if i.filename.endswith("data.pkl")][0]
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start, start + 16):
        raw[i] ^= 0xFF
    p.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError):
        load_checkpoint(p)


class Evil:
    pass


def test_unsafe_pickle_refused(tmp_path):
    p = tmp_path / "evil.pt"
    torch.save({"format": "bingnn-checkpoint", "obj": Evil()}, p)
    with pytest.raises(CheckpointError, match=r"holds a [\w.]*Evil object") as e:
        load_checkpoint(p)
    # No relayed advice to load unsafely (PyTorch's message suggests weights_only=False).
    assert "weights_only" not in str(e.value)
    assert "could run code" in str(e.value)


def _tiny_bgnn(path):
    from bingnn.export import export
    from bingnn.models import BinDGCNN

    model = BinDGCNN(num_classes=3, variant="bf2", k=4, widths=(8, 8, 8, 16), emb_dims=16,
                     mlp=(8, 8)).eval()
    return export(model, path)


@pytest.mark.parametrize(
    "kind, message",
    [
        ("bgnn", r"is an exported engine model \(\.bgnn\), not a bingnn checkpoint .*"
                 r"bingnn infer"),
        ("npy", r"is a numpy array file \(\.npy\), not a bingnn checkpoint"),
        ("npz", r"is a numpy archive \(\.npz\), not a bingnn checkpoint"),
        ("text", r"is a text file, not a bingnn checkpoint"),
    ],
)
def test_other_files_are_named_not_loaded(tmp_path, kind, message):
    """A file of another kind given as a checkpoint is named for what it is, whatever its
    extension, and is never handed to torch.load (whose advice is to load unsafely)."""
    p = tmp_path / "model.pt"
    if kind == "bgnn":
        _tiny_bgnn(tmp_path / "m.bgnn").rename(p)
    elif kind == "npy":
        np.save(tmp_path / "a.npy", np.zeros((5, 3), np.float32))
        (tmp_path / "a.npy").rename(p)
    elif kind == "npz":
        np.savez(tmp_path / "a.npz", x=np.zeros(3))
        (tmp_path / "a.npz").rename(p)
    else:
        p.write_text("just some text\n")
    with pytest.raises(CheckpointError, match=message) as e:
        load_checkpoint(p)
    assert "weights_only" not in str(e.value) and "unsafe" not in str(e.value)


def test_foreign_file(tmp_path):
    p = tmp_path / "plain.pt"
    torch.save({"a": torch.zeros(2)}, p)
    with pytest.raises(CheckpointError, match="not a bingnn checkpoint"):
        load_checkpoint(p)


def test_folder_and_bad_state(tmp_path):
    with pytest.raises(CheckpointError, match=r"is a folder, expected a checkpoint file"):
        load_checkpoint(tmp_path)
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "x.pt", [1, 2])  # type: ignore[arg-type]
