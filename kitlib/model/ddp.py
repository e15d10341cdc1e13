"""Multi-GPU launch for `ZTrainer` when cloudpickle is missing.

ultralytics' launcher (``ultralytics.utils.dist.generate_ddp_file``) writes a temporary script plus a state file
pickled with cloudpickle and runs it under ``torch.distributed.run``; the script rebuilds the trainer from its class,
which cloudpickle records by module path (``kitlib.model.trainer.ZTrainer``), so it works for the kit as is when
cloudpickle is installed. Without cloudpickle, ultralytics would try to pip-install it (the kit forbids that), so
`ZTrainer` falls back to this launcher: the same script shape, the trainer class imported explicitly by module path,
the state pickled with the standard pickler (the kit's model, args and ultralytics' default callbacks all pickle by
reference).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import torch

_SCRIPT = """\
# motor-kit multi-GPU training temp file (deleted after use)
if __name__ == "__main__":
    import sys
    sys.path = {sys_path!r}

    from kitlib import runtime
    runtime.prepare()

    import torch
    from ultralytics.utils import DEFAULT_CFG_DICT
    from {module} import {name} as Trainer

    state = torch.load({state!r}, map_location="cpu", weights_only=False)
    cfg = DEFAULT_CFG_DICT.copy()
    cfg.update(save_dir="")  # the extra key the trainer args carry
    trainer = Trainer(cfg=cfg, overrides=state["args"], _callbacks=state["callbacks"])
    trainer.model = state["model"]
    trainer.train()
"""


def _picklable_callbacks(callbacks: dict) -> dict | None:
    import pickle

    try:
        pickle.dumps(callbacks)
        return callbacks
    except Exception:  # e.g. a lambda added by a user: the workers fall back to the default callbacks
        return None


def write_ddp_script(trainer, directory: Path | None = None) -> Path:
    """Write the worker script and its state file; returns the script path."""
    from ultralytics.utils import USER_CONFIG_DIR

    directory = Path(directory or Path(USER_CONFIG_DIR) / "DDP")
    directory.mkdir(parents=True, exist_ok=True)
    fd, script = tempfile.mkstemp(prefix="_kit_ddp_", suffix=".py", dir=directory)
    os.close(fd)
    script = Path(script)
    state = script.with_suffix(".pt")
    torch.save(
        {"args": vars(trainer.args), "model": trainer.model, "callbacks": _picklable_callbacks(trainer.callbacks)},
        state,
    )
    cls = type(trainer)
    script.write_text(
        _SCRIPT.format(sys_path=sys.path, module=cls.__module__, name=cls.__qualname__, state=str(state))
    )
    return script


def ddp_command(trainer) -> tuple[list[str], str]:
    """(command, script) running the trainer on ``trainer.world_size`` processes via torch.distributed.run."""
    from ultralytics.utils.dist import find_free_network_port

    if not trainer.resume:
        shutil.rmtree(trainer.save_dir, ignore_errors=True)  # as ultralytics does: the workers recreate it
    script = write_ddp_script(trainer)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        str(trainer.world_size),
        "--master_port",
        str(find_free_network_port()),
        str(script),
    ]
    return cmd, str(script)


def cleanup(script: str) -> None:
    Path(script).unlink(missing_ok=True)
    Path(script).with_suffix(".pt").unlink(missing_ok=True)
