"""Training one verifier network on labelled patches: a fixed number of AdamW steps with a one-cycle schedule, each
batch half positives and half negatives (motors are the rarer class), every patch a fresh augmented view."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from kitlib.config import VerifyConfig
from kitlib.verify.net import PatchNet
from kitlib.verify.patches import augment


def train_net(patches: np.ndarray, labels: np.ndarray, vcfg: VerifyConfig, seed: int = 0) -> PatchNet:
    """A `PatchNet` trained on stored uint8 patches (`cut_patches`) with 0/1 `labels`, `vcfg.steps` steps of
    `vcfg.batch`; ValueError when either class is missing. The same inputs, seed and threads give the same weights."""
    labels = np.asarray(labels, bool)
    positives, negatives = np.flatnonzero(labels), np.flatnonzero(~labels)
    if not len(positives) or not len(negatives):
        raise ValueError(f"the verifier needs motor and non-motor patches; got {len(positives)} and {len(negatives)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = PatchNet(vcfg.planes, vcfg.width).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(net.parameters(), lr=vcfg.lr, weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, vcfg.lr, total_steps=vcfg.steps)
    half = vcfg.batch // 2
    target = torch.cat([torch.ones(half), torch.zeros(vcfg.batch - half)])
    net.train()
    for _ in range(vcfg.steps):
        batch = np.concatenate([rng.choice(positives, half), rng.choice(negatives, vcfg.batch - half)])
        x = torch.from_numpy(augment(patches[batch], vcfg, rng)).to(memory_format=torch.channels_last)
        loss = F.binary_cross_entropy_with_logits(net(x), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    return net.eval()
