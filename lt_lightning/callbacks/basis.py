r"""BasisCallback: prune in another basis (Alabdulmohsin et al. 2021): the module's prunable weights are held as their
coefficients in a basis for the fit, so that a masking callback prunes and rewinds coefficients.

>>> BasisCallback(basis="fourier")
Traceback (most recent call last):
ValueError: unknown basis name 'fourier'; known basis names: ['dct', 'identity'].
"""

from __future__ import annotations

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_info
from typing_extensions import override

from lt_lightning.callbacks._trainer import after_configure_model
from lt_lightning.masks import DEFAULT_TYPES
from lt_lightning.supermask import BASES, express_in_basis, weights_in_a_basis
from lt_lightning.validation import check_selection

#: The regex that names the coefficient tensors, for a masking callback's ``include=``.
COEFFICIENTS = r"parametrizations\.weight\.original$"


class BasisCallback(Callback):
    r"""Hold the module's prunable weights (``include``/``exclude``/``types``, as
    :func:`~lt_lightning.masks.select_parameters`) as coefficients in ``basis`` (``"dct"``: the orthonormal DCT-II of
    each row or kernel) from right after ``configure_model`` on: the module computes the same function, but its
    parameters are the coefficients (``<layer>.parametrizations.weight.original``), which the optimizer trains and a
    masking callback prunes when told so:

    .. code-block:: python

        trainer = L.Trainer(callbacks=[BasisCallback("dct"), RewindCallback(step=0),
                                       IMPCallback(include=r"parametrizations\.weight\.original$")])

    Checkpoints and tickets hold coefficients; :func:`~lt_lightning.supermask.express_in_basis` prepares a fresh
    module to load them, and :func:`~lt_lightning.supermask.export_weights` turns a trained module back into plain
    weights. For a supermask in a basis, use ``SupermaskCallback(basis=...)`` instead.
    """

    def __init__(self, basis: str = "dct", include: str | None = None, exclude: str | None = None,
                 types: list[str] | tuple[str, ...] = DEFAULT_TYPES) -> None:
        BASES.check(basis)
        check_selection(include, exclude, types)
        self.basis, self.include, self.exclude, self.types = basis, include, exclude, types

    @override
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not weights_in_a_basis(pl_module):  # a second fit, validate or test of the same module keeps its coefficients
            after_configure_model(pl_module, lambda: self._express(pl_module))

    def _express(self, pl_module: pl.LightningModule) -> None:
        names = express_in_basis(pl_module, self.basis, self.include, self.exclude, self.types)
        rank_zero_info(f"lt-lightning: {len(names)} weights held as {self.basis} coefficients; a masking callback"
                       f" prunes them with include=r{COEFFICIENTS!r}.")

