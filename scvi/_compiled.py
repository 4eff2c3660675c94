"""The optional compiled CPU kernels (the C extension ``scvi._kernels``, see ``_kernels.c``).

``kernels`` is the extension module, or ``None`` when it was not built (no C compiler at
install time) or when ``SCVI_COMPILED_KERNELS=0``: every caller then uses torch operations,
with the same results up to float rounding.
"""
import logging
import os

import torch  # loaded first: the extension then shares torch's OpenMP runtime

logger = logging.getLogger(__name__)

ENV_VAR = "SCVI_COMPILED_KERNELS"

kernels = None
if os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "off", "no"):
    try:
        from scvi import _kernels as kernels
    except ImportError as error:
        logger.debug("compiled kernels unavailable (%s); using torch operations", error)


def address(tensor) -> int:
    """The data address the kernels take for a tensor, ``0`` (a null pointer) for ``None``."""
    return 0 if tensor is None else tensor.data_ptr()


def float32_cpu(*tensors) -> bool:
    """Whether every tensor given (``None`` skipped) is float32 on the CPU, as the kernels take them."""
    return all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in tensors)
