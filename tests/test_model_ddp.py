"""Multi-process (DDP) training of the z-head model, on CPU with gloo. Opt-in: KIT_TEST_DDP=1 (about a minute).

ultralytics only runs DDP on accelerators (device '0,1'); `CpuDdpTrainer` bends three accelerator-only spots so the
rest of the path runs as on GPUs: the launcher writes a temporary script that imports the trainer class by module
path and rebuilds it in each worker, the workers join a process group, train with DistributedDataParallel and a
distributed sampler, gather validation stats (including the z errors) and rank 0 writes the checkpoints.

With cloudpickle installed ZTrainer uses ultralytics' own launcher; without it (this repo's venv), the kit launcher
in kitlib.model.ddp. Both were run by hand: `PYTHONPATH=<dir with cloudpickle> KIT_TEST_DDP=1 pytest ...`.
"""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
import torch
import torch.distributed as dist

from kitlib.model.build import build_model
from kitlib.testing import make_toy_export
from kitlib.model.trainer import ZTrainer
from ultralytics.utils import LOCAL_RANK, RANK  # after kitlib.model: runtime.prepare() ran first

WORLD = 2


class _CpuDDP(torch.nn.parallel.DistributedDataParallel):
    def __init__(self, module, device_ids=None, **kwargs):  # ultralytics passes [device.index] = [None] on CPU
        super().__init__(module, device_ids=None, **kwargs)


class CpuDdpTrainer(ZTrainer):
    """ZTrainer whose DDP runs on CPU processes (gloo). Imported by module path in the workers."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.world_size = WORLD  # ultralytics sets 0 on CPU
        self.ddp = LOCAL_RANK == -1

    def _setup_ddp(self):
        self.device = torch.device("cpu")
        dist.init_process_group("gloo", timeout=timedelta(seconds=600), rank=RANK, world_size=self.world_size)

    def _setup_train(self):
        torch.nn.parallel.DistributedDataParallel = _CpuDDP
        super()._setup_train()

    def final_eval(self):
        # ultralytics' re-validation of best.pt inside DDP workers picks torch.cuda.current_device(): GPU-only
        self.write_kit_meta()


@pytest.mark.skipif(not os.environ.get("KIT_TEST_DDP"), reason="opt-in: KIT_TEST_DDP=1 (spawns 2 training processes)")
def test_ddp_training_on_cpu_processes(tmp_path):
    data = make_toy_export(tmp_path / "export", n_train=8, n_val=4, size=64, stack_stride=2)
    trainer = CpuDdpTrainer(
        overrides=dict(
            model="yolov8n.yaml", data=str(data), imgsz=64, batch=4, epochs=2, device="cpu", workers=0,
            project=str(tmp_path / "runs"), name="ddp", exist_ok=True, plots=False, close_mosaic=1,
        )
    )
    model = build_model("n")
    model.names = trainer.data["names"]
    model.z_gain = 2.0  # travels to the workers inside the pickled model
    trainer.model = model
    assert trainer.ddp
    trainer.train()
    ckpt = torch.load(trainer.best, map_location="cpu", weights_only=False)
    assert ckpt["kit_meta"]["z_span"] == 4 and ckpt["model"].z_gain == 2.0
    header = (tmp_path / "runs" / "ddp" / "results.csv").read_text().splitlines()[0]
    assert "train/z_loss" in header and "metrics/dz_med(slices)" in header
