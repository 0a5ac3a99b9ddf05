"""nn.functional (`F`): function forms of layers and losses."""

from graddesc.functional.activation import gelu, leaky_relu, relu, sigmoid, softplus, tanh
from graddesc.functional.activation_extra import (
    celu,
    elu,
    glu,
    hardshrink,
    hardsigmoid,
    hardswish,
    hardtanh,
    logsigmoid,
    mish,
    prelu,
    relu6,
    selu,
    softmin,
    softshrink,
    softsign,
    tanhshrink,
)
from graddesc.functional.conv import (
    adaptive_avg_pool2d,
    avg_pool2d,
    conv1d,
    conv2d,
    max_pool2d,
    unflatten,
)
from graddesc.functional.distance import (
    cosine_embedding_loss,
    cosine_similarity,
    margin_ranking_loss,
    pairwise_distance,
    triplet_margin_loss,
)
from graddesc.functional.linear import linear
from graddesc.functional.loss import (
                                      binary_cross_entropy,
                                      binary_cross_entropy_with_logits,
                                      cross_entropy,
                                      hinge_embedding_loss,
                                      l1_loss,
                                      log_softmax,
                                      mse_loss,
                                      nll_loss,
                                      softmax,
)
from graddesc.functional.nn_extra import (
    dropout,
    huber_loss,
    kl_div,
    normalize,
    one_hot,
    silu,
    smooth_l1_loss,
)
from graddesc.functional.norm import batch_norm, embedding, layer_norm
from graddesc.functional.norm_extra import group_norm, instance_norm
from graddesc.functional.pad import pad
from graddesc.functional.shape import flatten

__all__ = ["binary_cross_entropy", "binary_cross_entropy_with_logits", "cross_entropy",
           "flatten", "gelu", "hinge_embedding_loss", "l1_loss", "leaky_relu", "linear",
           "log_softmax", "mse_loss", "nll_loss", "relu", "sigmoid", "softmax", "softplus",
           "tanh", "dropout", "huber_loss", "kl_div", "normalize", "one_hot", "silu",
           "smooth_l1_loss", "batch_norm", "embedding", "layer_norm",
           "adaptive_avg_pool2d", "avg_pool2d", "conv1d", "conv2d",
           "max_pool2d", "unflatten",
           "celu", "elu", "glu", "hardshrink", "hardsigmoid", "hardswish", "hardtanh",
           "logsigmoid", "mish", "prelu", "relu6", "selu", "softmin", "softshrink", "softsign",
           "tanhshrink", "pad", "cosine_embedding_loss", "cosine_similarity",
           "margin_ranking_loss", "pairwise_distance", "triplet_margin_loss", "group_norm",
           "instance_norm"]
