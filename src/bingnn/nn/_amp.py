"""Autocast policy of the library's autograd functions.

Under CUDA autocast (``--bf16``) a function may receive bfloat16 activations beside float32
parameters. The functions here are statistics, selections and elementwise passes (the matrix
products around them are what bfloat16 speeds up), so they run in float32: inputs are cast
on entry and the backward runs under the forward's autocast state, as PyTorch's own
``batch_norm`` does under autocast. Outside autocast, and on the CPU, nothing changes."""

from __future__ import annotations

import torch

fp32_forward = torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
fp32_backward = torch.amp.custom_bwd(device_type="cuda")
