"""Training recipes: each paper's optimiser settings, as ``TrainConfig`` field values.

``paper`` recipes hold only what the paper states (all use Adam, ``train``'s optimiser when
``weight_decay`` is 0); the fields a paper leaves out keep ``train``'s defaults.

- ``glfcr`` (seed 001, sec. 5.1): Adam, learning rate 1e-4 halved every 5 epochs, batch 12,
  30 epochs, 128 px random crops.
- ``carf`` (seed 002, sec. IV): Adam, learning rate 1e-5, 256 px samples (SEN12MS-CR patches
  whole). It names no schedule, batch or epoch count: constant rate, the defaults otherwise.
- ``sgbafm`` (seed 003, sec. III-A): Adam, learning rate 1e-3, batch 4, 10 epochs, learning rate
  decayed exponentially by a factor 0.8 (read as once per epoch), 256 px samples.

DSen2-CR and IB-HFN have none: DSen2-CR's paper is not among the seeds, and IB-HFN's abstract
gives no optimisation settings.
"""

from __future__ import annotations

from cloudfree.core.errors import UsageError

RECIPES: dict[str, dict[str, dict]] = {
    "paper": {
        "glfcr": {"lr": 1e-4, "schedule": "step", "batch_size": 12, "epochs": 30, "crop": 128},
        "carf": {"lr": 1e-5, "schedule": "constant", "crop": 256},
        "sgbafm": {"lr": 1e-3, "schedule": "exponential", "decay": 0.8, "batch_size": 4,
                   "epochs": 10, "crop": 256},
    },
}


def with_recipe(name: str | None, arch: str, values: dict, given: set[str]) -> dict:
    """``values`` (``TrainConfig`` fields) with recipe ``name`` applied to those not ``given``
    explicitly; unchanged when ``name`` is None."""
    if name is None:
        return values
    return {**values, **{k: v for k, v in recipe(name, arch).items() if k not in given}}


def recipe(name: str, arch: str) -> dict:
    """The ``TrainConfig`` values of recipe ``name`` for ``arch``; a one-line error if none."""
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r} (known: {', '.join(RECIPES)})")
    if arch not in RECIPES[name]:
        raise UsageError(f"no {name} recipe for {arch} (there are for "
                         f"{', '.join(RECIPES[name])}); set the learning rate, schedule, "
                         "batch size, epochs and crop yourself")
    return dict(RECIPES[name][arch])
