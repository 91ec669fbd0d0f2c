"""PyTorch side of the pretrained models: rebuild a registered model from its card and its
safetensors weights (plain tensors: loading runs no code from the file)."""

from __future__ import annotations

from torch import nn

from bingnn.pretrained import pretrained_info, weights_file
from bingnn.pretrained.card import CardError

__all__ = ["load_pretrained"]


def load_pretrained(name: str) -> nn.Module:
    """The registered model ``name`` on the CPU, in eval mode, with its card's weights.

    Raises:
        ValueError: unknown name; a card, weights file or configuration that does not match.
        FileNotFoundError: the name is registered but its files are not installed.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from bingnn.models.registry import build_model

    card = pretrained_info(name)
    path = weights_file(name)
    model = build_model(card["model_config"])
    try:
        state = load_file(str(path), device="cpu")
    except SafetensorError as e:
        raise CardError(f"{path}: not a readable safetensors file ({e})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as e:
        msg = " ".join(str(e).split())[:200]
        raise CardError(f"{path}: weights do not match the card's model_config ({msg})") from None
    return model.eval()
