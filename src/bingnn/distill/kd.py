"""Logit knowledge distillation (Hinton et al. 2015)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def _checked_temperature(student_logits: Tensor, teacher_logits: Tensor,
                         temperature: float) -> float:
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return float(temperature)


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 3.0) -> Tensor:
    r"""Temperature-softened KL divergence, scaled by :math:`T^2`.

    .. math::
        \mathcal{L}_{KD} = T^2 \, \frac{1}{B} \sum_b
            \mathrm{KL}\big(\mathrm{softmax}(t_b / T) \,\|\, \mathrm{softmax}(s_b / T)\big)

    The :math:`T^2` factor keeps the gradient scale independent of :math:`T`. The teacher's
    logits are detached.

    Shapes:
        ``student_logits``, ``teacher_logits``: ``(B, C)`` -> scalar.
    """
    t = _checked_temperature(student_logits, teacher_logits, temperature)
    log_p_s = F.log_softmax(student_logits / t, dim=-1)
    log_p_t = F.log_softmax(teacher_logits.detach() / t, dim=-1)
    return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


def kd_loss_multilabel(student_logits: Tensor, teacher_logits: Tensor,
                       temperature: float = 2.0) -> Tensor:
    r"""Logit KD for multi-label outputs (independent binary tasks, e.g. ogbn-proteins):
    binary cross-entropy of the student's softened sigmoid against the teacher's, scaled by
    :math:`T^2`, averaged over samples and tasks. A softmax over the tasks, as in
    :func:`kd_loss`, would make them compete for one unit of probability.

    .. math::
        \mathcal{L} = T^2 \, \frac{1}{BC} \sum_{b,c}
            \mathrm{BCE}\big(\sigma(s_{bc}/T), \sigma(t_{bc}/T)\big)

    Shapes:
        ``student_logits``, ``teacher_logits``: ``(B, C)`` -> scalar.
    """
    t = _checked_temperature(student_logits, teacher_logits, temperature)
    target = (teacher_logits.detach() / t).sigmoid()
    return F.binary_cross_entropy_with_logits(student_logits / t, target) * (t * t)
