"""Cloud-removal networks; importing this package fills the registry."""

from cloudfree.networks.base import CloudRemovalNet
from cloudfree.networks.registry import ARCHITECTURES, build, get_architecture, register

__all__ = ["ARCHITECTURES", "CloudRemovalNet", "build", "get_architecture", "register"]

from cloudfree.networks import dsen2cr  # noqa: F401,E402,I001  (registers)
from cloudfree.networks import glfcr  # noqa: F401,E402  (registers)
from cloudfree.networks import ibhfn  # noqa: F401,E402  (registers)
from cloudfree.networks import sgbafm  # noqa: F401,E402  (registers)
from cloudfree.networks import carf  # noqa: F401,E402  (registers)
from cloudfree.networks import fillnet  # noqa: F401,E402  (registers)
