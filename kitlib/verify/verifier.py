"""`Verifier`: a run's verifier networks, `verify.members` per fold, with the patch geometry they were trained on
(`verifier.pt`).

Local scoring rescores each fold's held-out candidates with the networks that never saw that fold; a test split is
rescored with the mean of all of them. The file (`RunDir.verifier`) holds plain tensors and numbers (read with
`weights_only=True`), so it needs no sanitising before it is shared; the networks predict on the CPU whatever device
the detectors use (a few patches per tomogram).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import torch

from kitlib.config import VerifyConfig
from kitlib.data.errors import DataError
from kitlib.verify.net import PatchNet
from kitlib.verify.patches import network_input, tta_views
from kitlib.version import package_version

# The settings that decide what a patch is: prediction cuts patches as the networks were trained on them.
GEOMETRY = ("patch", "shift", "shift_z", "planes", "plane_step", "bin")


class Verifier:
    """Fold -> its `PatchNet`s, and the `VerifyConfig` they were trained with."""

    def __init__(self, nets: dict[int, list[PatchNet]], vcfg: VerifyConfig, source: str = "verifier"):
        if not nets or not all(nets.values()):
            raise ValueError(f"{source}: a verifier needs at least one network per fold")
        self.nets = {int(fold): [net.eval() for net in members] for fold, members in sorted(nets.items())}
        self.vcfg, self.source = vcfg, source

    def geometry(self) -> dict:
        """The patch settings prediction must cut with (`GEOMETRY`)."""
        return {key: getattr(self.vcfg, key) for key in GEOMETRY}

    def probability(self, patches: np.ndarray, fold: int | None = None) -> np.ndarray:
        """P(motor) of stored uint8 patches (`kitlib.verify.patches.cut_patches`): the mean over the TTA views
        (`tta_views`) and over the networks of every fold, or of `fold` alone."""
        if not len(patches):
            return np.zeros(0)
        nets = [net for f, members in self.nets.items() if fold is None or f == int(fold) for net in members]
        x = network_input(patches, self.vcfg)
        with torch.no_grad():
            logits = [net(torch.from_numpy(np.ascontiguousarray(view))) for net in nets for view in tta_views(x)]
        return torch.sigmoid(torch.stack(logits)).mean(0).double().numpy()

    def save(self, path: Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {"nets": {str(fold): [net.state_dict() for net in members] for fold, members in self.nets.items()},
                 "verify": dataclasses.asdict(self.vcfg), "kit_version": package_version()}
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: Path) -> "Verifier":
        """The verifier saved at `path`; DataError naming the file when it cannot be read as one."""
        path = Path(path)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            vcfg = VerifyConfig(**state["verify"])
            nets = {}
            for fold, members in state["nets"].items():
                nets[int(fold)] = [PatchNet(vcfg.planes, vcfg.width) for _ in members]
                for net, weights in zip(nets[int(fold)], members):
                    net.load_state_dict(weights)
        except (OSError, RuntimeError, KeyError, TypeError, ValueError, AttributeError, pickle.UnpicklingError) as e:
            first_line = next(iter(str(e).splitlines()), "")[:100]
            raise DataError(f"{path}: not a readable verifier ({type(e).__name__}: {first_line}); rerun make "
                            f"local-score to train it again") from e
        return cls(nets, vcfg, str(path))
