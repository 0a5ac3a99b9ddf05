"""The lecture's PyTorch listing with `torch` replaced by `graddesc`; nothing else changed."""

import graddesc as torch
import graddesc.nn as nn
import graddesc.nn.functional as F


class mynet(nn.Module):  # noqa: N801 -- the lecture's name
    def __init__(self):
        super(mynet, self).__init__()
        self.fc0 = nn.Linear(600, 60)  # 600 inputs, 60 outputs
        self.fc1 = nn.Linear(60, 40)   # 60 inputs, 40 outputs
        self.fc2 = nn.Linear(40, 10)   # 40 inputs, 10 outputs

    def forward(self, x):
        x = x.view(-1)                 # flatten 3-d input into a vector
        x = F.relu(self.fc0(x))        # multiply by W0, add bias, ReLU
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


model = mynet()                        # create an instance of the model
image = torch.randn(3, 10, 20)         # a random 3x10x20 "image"
out = model(image)                     # run the model on it
print("output:", out)

loss = (out ** 2).sum()
loss.backward()
print("gradient of the loss w.r.t. fc0.weight has shape", tuple(model.fc0.weight.grad.shape))
