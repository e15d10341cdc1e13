"""Process set-up that must run before ultralytics is imported: offline, no telemetry, threads, fonts.

Call `prepare()` before the first ``import ultralytics`` anywhere in the kit (kitlib.model does it for you). It is
idempotent and cheap after the first call.

What it guarantees:
- ``YOLO_OFFLINE=1`` (ultralytics' ``ONLINE`` is False: no analytics events, no online checks) and
  ``YOLO_AUTOINSTALL=false`` (never pip-installs a missing requirement);
- ``YOLO_CONFIG_DIR`` points at a writable directory (``~/.cache/motor-kit/ultralytics``, or a private temp dir when
  HOME is not writable), holding ultralytics' settings.json and the fonts;
- every integration (hub/platform sync, ClearML, Comet, DVC, MLflow, Ray Tune, W&B, TensorBoard) is switched off in
  ultralytics' settings (``train.tensorboard`` hands a kit trainer ultralytics' TensorBoard callback itself, see
  ``kitlib.model.trainer``);
- ``Arial.ttf`` and ``Arial.Unicode.ttf`` exist in ultralytics' config dir (copies of matplotlib's bundled
  DejaVuSans.ttf), so ``check_font`` never downloads;
- torch / OpenMP threads are what the kit asked for, not the 1 that ultralytics forces when ``OMP_NUM_THREADS`` is
  unset (its ``select_device`` also resets torch threads on CPU: that binding is patched too).

The remaining network touch point, the AMP check on CUDA that downloads ``yolo26n.pt``, is pre-empted inside the
trainer (``kitlib.model.trainer``), which replaces it by a local check.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

_LOG = logging.getLogger(__name__)

_FONTS = ("Arial.ttf", "Arial.Unicode.ttf")
_SETTINGS_OFF = dict(
    sync=False,
    hub=False,
    clearml=False,
    comet=False,
    dvc=False,
    mlflow=False,
    neptune=False,
    raytune=False,
    tensorboard=False,
    wandb=False,
    vscode_msg=False,
    openvino_msg=False,
)

_state: dict = {"config_dir": None}


def _writable_dir(candidate: Path) -> Path | None:
    try:
        candidate.mkdir(parents=True, exist_ok=True)
        probe = candidate / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
        return candidate
    except OSError:
        return None


def _default_config_dir() -> Path:
    home_dir = _writable_dir(Path.home() / ".cache" / "motor-kit" / "ultralytics")
    if home_dir is not None:
        return home_dir
    return Path(tempfile.mkdtemp(prefix="motor-kit-ultralytics-"))


def _bundled_font() -> Path | None:
    """matplotlib's DejaVuSans.ttf, found without importing matplotlib."""
    spec = importlib.util.find_spec("matplotlib")
    for root in (spec.submodule_search_locations or []) if spec else []:
        font = Path(root) / "mpl-data" / "fonts" / "ttf" / "DejaVuSans.ttf"
        if font.is_file():
            return font
    return None


def _place_fonts(directory: Path) -> None:
    src = _bundled_font()
    if src is None:
        _LOG.warning("matplotlib's DejaVuSans.ttf not found: ultralytics may try to download Arial.ttf")
        return
    directory.mkdir(parents=True, exist_ok=True)
    for name in _FONTS:
        dst = directory / name
        if not dst.is_file() or dst.stat().st_size == 0:
            shutil.copyfile(src, dst)


def _set_threads(threads: int | None) -> int:
    if threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else (os.cpu_count() or 1)
    threads = max(1, int(threads))
    os.environ["OMP_NUM_THREADS"] = str(threads)
    if "torch" in sys.modules or importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(threads)
    return threads


def prepare(config_dir: Path | None = None, threads: int | None = None) -> None:
    """Make this process safe for ultralytics: offline, no telemetry, fonts in place, threads set.

    Args:
        config_dir: ultralytics' config dir (``YOLO_CONFIG_DIR``). Default: an existing ``YOLO_CONFIG_DIR``, else
            ``~/.cache/motor-kit/ultralytics``, else a private temp dir. Only the first call chooses it.
        threads: torch / OpenMP threads. Default: ``OMP_NUM_THREADS`` if set, else all cores. Every call applies it.
    """
    # A process started by a prepared one (e.g. a DDP worker) inherits this environment: then importing ultralytics
    # first is harmless.
    env_ready = os.environ.get("YOLO_OFFLINE") == "1" and bool(os.environ.get("YOLO_CONFIG_DIR"))
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    first_call = _state["config_dir"] is None
    already_imported = first_call and "ultralytics" in sys.modules

    if first_call:
        if config_dir is not None:
            chosen = _writable_dir(Path(config_dir).expanduser())
            if chosen is None:
                raise ValueError(f"{config_dir}: ultralytics config dir is not writable")
        elif os.environ.get("YOLO_CONFIG_DIR") and _writable_dir(Path(os.environ["YOLO_CONFIG_DIR"])):
            chosen = Path(os.environ["YOLO_CONFIG_DIR"])
        else:
            chosen = _default_config_dir()
        if not already_imported:
            os.environ["YOLO_CONFIG_DIR"] = str(chosen)
        _state["config_dir"] = chosen

    n_threads = _set_threads(threads)

    # From here on ultralytics may be imported: the environment above is in place.
    import ultralytics.utils as uu
    import ultralytics.utils.torch_utils as utu

    if already_imported and not env_ready:
        _LOG.warning(
            "ultralytics was imported before kitlib.runtime.prepare(): its config dir is %s and its online check "
            "already ran; settings and fonts are fixed up there, but call prepare() first.",
            uu.USER_CONFIG_DIR,
        )
    # ultralytics keeps settings and fonts in USER_CONFIG_DIR = $YOLO_CONFIG_DIR/Ultralytics
    _place_fonts(Path(uu.USER_CONFIG_DIR))
    settings = uu.SETTINGS
    off = {k: v for k, v in _SETTINGS_OFF.items() if k in settings and settings[k] != v}
    if off:
        settings.update(off)
    utu.NUM_THREADS = n_threads  # select_device() resets torch threads to this on CPU
    uu.ONLINE = False
    _disable_events()


def _disable_events() -> None:
    """Belt and braces: ultralytics' analytics object never sends (it is already off when offline)."""
    try:
        from ultralytics.utils import events
    except ImportError:  # pragma: no cover - older layouts
        return
    ev = getattr(events, "events", None)
    if ev is not None:
        ev.enabled = False


def config_dir() -> Path | None:
    """The directory chosen by `prepare()` (None before the first call)."""
    return _state["config_dir"]
