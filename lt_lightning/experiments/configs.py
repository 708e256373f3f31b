"""Reading and rewriting the LightningCLI configs of a run, shared by the experiments that derive fits from it."""

from __future__ import annotations

import copy
import importlib
import inspect
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger, WandbLogger

from lt_lightning.layout import LOGS_DIR

# The parts of a config LightningCLI builds; the others (ckpt_path, ...) are arguments of `fit` itself.
BUILT = ("seed_everything", "trainer", "model", "data", "optimizer", "lr_scheduler")


def quiet_console(threads: int) -> None:
    """For scripts (examples, benchmarks): use ``threads`` torch threads, keep Lightning's logs to warnings, and drop
    advice that does not apply to in-memory datasets of a few thousand samples."""
    import warnings

    import torch

    torch.set_num_threads(threads)
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    warnings.filterwarnings("ignore", ".*You defined a `validation_step` but have no `val_dataloader`.*")


@contextmanager
def quiet_lightning() -> Iterator[None]:
    """Lightning's info messages held back (many fits in a row would repeat them), restored after."""
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def check_builds(config: dict[str, Any], where: str) -> None:
    """Build the model, data, Trainer and callbacks of ``config`` as ``lt-lightning fit`` would, without training:
    a config LightningCLI refuses (an unknown key, a value a class does not take) fails here once, naming
    ``where``, before any job of it starts (the jobs would each fail with it)."""
    import warnings

    import lightning.pytorch as pl

    from lt_lightning.cli import LTLightningCLI  # the CLI imports the experiments

    # A copy: LightningCLI fills in the dicts it is given (defaults, class paths), and the caller writes ``config``.
    built = copy.deepcopy({k: v for k, v in config.items() if k in BUILT})
    try:
        with warnings.catch_warnings(), quiet_lightning():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            LTLightningCLI(pl.LightningModule, None, subclass_mode_model=True, subclass_mode_data=True, args=built,
                           run=False, save_config_callback=None, parser_kwargs={"exit_on_error": False})
    except ValueError as err:
        raise ValueError(f"{where} does not parse: {err}") from err


def config_callbacks(config: dict[str, Any]) -> list[Any]:
    """The ``trainer.callbacks`` entries of a config, as a list.

    >>> config_callbacks({"trainer": {"callbacks": {"class_path": "EarlyStopping"}}})
    [{'class_path': 'EarlyStopping'}]
    """
    callbacks = (config.get("trainer") or {}).get("callbacks") or []
    return list(callbacks) if isinstance(callbacks, list) else [callbacks]


def config_class(spec: Any) -> type | None:
    """The class a ``{class_path: ...}`` entry names, or ``None`` where it cannot be imported here.

    >>> config_class({"class_path": "ModelCheckpoint"}).__name__
    'ModelCheckpoint'
    """
    path = spec.get("class_path") if isinstance(spec, dict) else None
    if not isinstance(path, str):
        return None
    module, _, name = path.rpartition(".")
    # LightningCLI also takes the bare names of Lightning's own callbacks and loggers.
    for where in [module] if module else ["lightning.pytorch.callbacks", "lightning.pytorch.loggers", "lt_lightning"]:
        try:
            found = getattr(importlib.import_module(where), name)
        except (ImportError, AttributeError):
            continue
        return found if inspect.isclass(found) else None
    return None


def config_is(spec: Any, types: type | tuple[type, ...]) -> bool:
    """Whether a config entry names a subclass of ``types``."""
    cls = config_class(spec)
    return cls is not None and issubclass(cls, types)


def logger_into(spec: Any, folder: str, name: str) -> Any:
    """The run's logger(s), writing into ``folder`` under the run name ``name``. ``None``/``True`` (Lightning's default
    logger) and ``False`` follow ``default_root_dir`` or log nothing as they are."""
    if isinstance(spec, list):
        return [logger_into(s, folder, name) for s in spec]
    cls = config_class(spec)
    if cls is None:
        return spec
    args = dict(spec.get("init_args") or {})
    if "save_dir" in inspect.signature(cls).parameters:
        args["save_dir"] = folder
    if issubclass(cls, (CSVLogger, TensorBoardLogger)):
        args.update(name="", version="logs")  # logs in <folder>/logs
    elif issubclass(cls, WandbLogger):
        args.pop("id", None)  # a run of its own, never the one the config was saved from
        args.update(name=name, version=None)
    return {**spec, "init_args": args}


def logger_below(spec: Any, folder: str, name: str) -> Any:
    """The run's logger(s) writing below ``folder/logs`` (:func:`logger_into`): never into ``folder`` itself, where
    Lightning would save its own copy of the config over a job's ``config.yaml`` (LightningCLI saves it into the
    log dir: a WandbLogger's ``save_dir``, ``default_root_dir`` without a logger)."""
    if isinstance(spec, list):
        return [logger_below(s, folder, name) for s in spec]
    cls = config_class(spec)
    if cls is not None and issubclass(cls, (CSVLogger, TensorBoardLogger)):
        return logger_into(spec, folder, name)  # logs in folder/logs
    return logger_into(spec, os.path.join(folder, LOGS_DIR), name)
