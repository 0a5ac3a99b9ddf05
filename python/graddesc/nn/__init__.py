"""Neural-network building blocks: Module, Parameter, layers, losses, init, functional."""

from graddesc.nn import functional, init, utils
from graddesc.nn.conv import AdaptiveAvgPool2d, AvgPool2d, Conv1d, Conv2d, MaxPool2d, Unflatten
from graddesc.nn.extra import (
    Dropout,
    HuberLoss,
    KLDivLoss,
    ModuleDict,
    ParameterDict,
    ParameterList,
    SiLU,
    SmoothL1Loss,
)
from graddesc.nn.layers_extra import (
    CELU,
    ELU,
    GLU,
    SELU,
    ConstantPad1d,
    ConstantPad2d,
    ConstantPad3d,
    Hardshrink,
    Hardsigmoid,
    Hardswish,
    Hardtanh,
    LogSigmoid,
    Mish,
    PReLU,
    ReLU6,
    Softmin,
    Softshrink,
    Softsign,
    Tanhshrink,
    ZeroPad1d,
    ZeroPad2d,
)
from graddesc.nn.module import Module
from graddesc.nn.modules import (
    GELU,
    BCELoss,
    BCEWithLogitsLoss,
    CrossEntropyLoss,
    Flatten,
    HingeEmbeddingLoss,
    Identity,
    L1Loss,
    LeakyReLU,
    Linear,
    LogSoftmax,
    ModuleList,
    MSELoss,
    NearestNeighbor,
    NLLLoss,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Softplus,
    Tanh,
)
from graddesc.nn.norm import BatchNorm1d, BatchNorm2d, BatchNorm3d, Embedding, LayerNorm
from graddesc.nn.parameter import Parameter

__all__ = ["BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "Flatten", "GELU",
           "HingeEmbeddingLoss", "Identity", "L1Loss", "LeakyReLU", "Linear", "LogSoftmax",
           "MSELoss", "Module", "ModuleList", "NLLLoss", "NearestNeighbor", "Parameter", "ReLU",
           "Sequential", "Sigmoid", "Softmax", "Softplus", "Tanh", "functional", "init", "utils",
           "Dropout", "HuberLoss", "KLDivLoss", "ModuleDict", "ParameterDict", "ParameterList",
           "SiLU", "SmoothL1Loss", "BatchNorm1d", "BatchNorm2d", "BatchNorm3d", "Embedding",
           "LayerNorm",
           "AdaptiveAvgPool2d", "AvgPool2d", "Conv1d", "Conv2d",
           "MaxPool2d", "Unflatten",
           "CELU", "ELU", "GLU", "SELU", "ConstantPad1d", "ConstantPad2d", "ConstantPad3d",
           "Hardshrink", "Hardsigmoid", "Hardswish", "Hardtanh", "LogSigmoid", "Mish", "PReLU",
           "ReLU6", "Softmin", "Softshrink", "Softsign", "Tanhshrink", "ZeroPad1d", "ZeroPad2d"]
