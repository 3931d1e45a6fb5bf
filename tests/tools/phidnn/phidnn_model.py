"""phidnn_model.py - the phiDNN networks (torch), the data loader and the corruptions.

Architecture (all convs 3x3, pad 1; layer widths are exported to GGUF metadata):

  R (recreation), input cin x 28 x 28 (sr: 1 x 14 x 14, nearest up-sampled x2 first):
    conv s1 cin->r1, relu; conv s2 r1->r2, relu (14x14); conv s1 r2->r2, relu;
    conv s1 r2->r1, relu; nearest up x2 (28x28); conv s1 r1->r3, relu;
    conv s1 r3->1, sigmoid
  C (classifier), input 1 x 28 x 28:
    conv s1 1->c1, relu, maxpool 2 (14); conv s1 c1->c2, relu, maxpool 2 (7);
    dense c2*49->d1, relu; dense d1->10 (logits)
"""
import gzip
import hashlib
import os

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

DATA_DIR = os.environ.get("PHIDNN_DATA", "/usr/share/datasets/fashion-mnist")
FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}
CLASS_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
R_WIDTHS = (16, 32, 8)      # r1, r2, r3
C_WIDTHS = (16, 32, 48)     # c1, c2, d1
SR_SCALE = 2
SR_SIGMA = 0.1
INP_K = 4


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    return h.hexdigest()


def load_idx(name):
    with gzip.open(os.path.join(DATA_DIR, FILES[name]), "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[0:4], "big")
    ndim = magic & 0xFF
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def dataset_checksums():
    return {FILES[k]: sha256_file(os.path.join(DATA_DIR, FILES[k])) for k in FILES}


class Recreator(nn.Module):
    def __init__(self, cin, upsample_input=False, widths=R_WIDTHS):
        super().__init__()
        r1, r2, r3 = widths
        self.upsample_input = upsample_input
        self.e1 = nn.Conv2d(cin, r1, 3, 1, 1)
        self.e2 = nn.Conv2d(r1, r2, 3, 2, 1)
        self.e3 = nn.Conv2d(r2, r2, 3, 1, 1)
        self.d1 = nn.Conv2d(r2, r1, 3, 1, 1)
        self.d2 = nn.Conv2d(r1, r3, 3, 1, 1)
        self.d3 = nn.Conv2d(r3, 1, 3, 1, 1)

    def layers(self):
        return [("e1", self.e1, 1), ("e2", self.e2, 2), ("e3", self.e3, 1),
                ("d1", self.d1, 1), ("d2", self.d2, 1), ("d3", self.d3, 1)]

    def forward(self, x):
        if self.upsample_input:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.relu(self.e1(x))
        x = F.relu(self.e2(x))
        x = F.relu(self.e3(x))
        x = F.relu(self.d1(x))
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = F.relu(self.d2(x))
        return torch.sigmoid(self.d3(x))


class Classifier(nn.Module):
    def __init__(self, widths=C_WIDTHS, n_classes=10):
        super().__init__()
        c1, c2, d1 = widths
        self.c1 = nn.Conv2d(1, c1, 3, 1, 1)
        self.c2 = nn.Conv2d(c1, c2, 3, 1, 1)
        self.f1 = nn.Linear(c2 * 49, d1)
        self.f2 = nn.Linear(d1, n_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)
        x = F.max_pool2d(F.relu(self.c2(x)), 2)
        x = F.relu(self.f1(x.flatten(1)))
        return self.f2(x)


def grid_masks(device="cpu"):
    """K=4 masks, the phases of a 2x2 grid: M_k[i,j] = 1 iff 2*(i%2)+(j%2) == k. (4,1,28,28)."""
    i = torch.arange(28).view(28, 1)
    j = torch.arange(28).view(1, 28)
    phase = 2 * (i % 2) + (j % 2)
    return torch.stack([(phase == k).float() for k in range(INP_K)]).unsqueeze(1).to(device)


def inpaint_input(x, m):
    """R's input for mask m: [x * (1 - m), m] as 2 channels."""
    return torch.cat([x * (1 - m), m.expand_as(x)], dim=1)


def recreate_inpaint(r, x):
    """x_hat = sum_k M_k * R([x*(1-M_k), M_k]) over the grid masks."""
    masks = grid_masks(x.device)
    out = torch.zeros_like(x)
    for k in range(INP_K):
        m = masks[k:k + 1]
        out = out + m * r(inpaint_input(x, m))
    return out


def area_down(x, s=SR_SCALE):
    return F.avg_pool2d(x, s)


def sr_corrupt(x, noise):
    """clip(down(x) + sigma * noise, 0, 1); noise is N(0,1) of shape (B,1,14,14)."""
    return torch.clamp(area_down(x) + SR_SIGMA * noise, 0.0, 1.0)
