"""Read downloaded metadata pickles without running code.

Some built-in datasets (``PbmcDataset``, ``BrainSmallDataset``) ship their metadata as pickles of
dicts of numpy arrays and pandas frames. ``pickle.load`` would run whatever callable a tampered
file names; :func:`safe_load` admits only numpy / pandas data types, their reconstruction helpers
and builtin containers, and raises :class:`UnsafePickleError` for anything else, before importing
or calling it.
"""
import functools
import io
import logging
import os
import pickle
from typing import Any, BinaryIO, FrozenSet, Tuple, Union

logger = logging.getLogger(__name__)

__all__ = ["UnsafePickleError", "safe_load", "safe_loads"]


class UnsafePickleError(pickle.UnpicklingError):
    """A pickle referenced something other than numpy / pandas data types and builtin containers."""


# Modules a pickle may import from at all; anything else is refused before it is imported.
_ALLOWED_MODULE_ROOTS = ("numpy", "pandas")
_ALLOWED_PLAIN_MODULES = ("builtins", "copyreg", "functools", "collections", "_codecs", "datetime")

_SAFE_BUILTINS: FrozenSet[str] = frozenset(
    {
        "object",
        "dict",
        "list",
        "tuple",
        "set",
        "frozenset",
        "slice",
        "range",
        "complex",
        "bytes",
        "bytearray",
        "str",
        "int",
        "float",
        "bool",
    }
)

# Reconstruction helpers (functions, not types) that numpy / pandas / the pickle protocol put in
# pickles. Resolved lazily; those absent from the installed versions are skipped.
_SAFE_FUNCTION_NAMES: Tuple[Tuple[str, str], ...] = (
    ("copyreg", "_reconstructor"),
    ("functools", "partial"),
    ("collections", "OrderedDict"),
    ("_codecs", "encode"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy._core.numeric", "_frombuffer"),
    ("pandas.core.indexes.base", "_new_Index"),
    ("pandas.core.indexes.datetimes", "_new_DatetimeIndex"),
    ("pandas.core.indexes.period", "_new_PeriodIndex"),
    ("pandas.core.internals.blocks", "new_block"),
    ("pandas.core.internals.blocks", "make_block"),
    ("pandas._libs.internals", "_unpickle_block"),
    ("pandas._libs.arrays", "__pyx_unpickle_NDArrayBacked"),
    ("pandas._libs.tslibs.timestamps", "_unpickle_timestamp"),
    ("pandas._libs.tslibs.timedeltas", "_timedelta_unpickle"),
    ("pandas._libs.tslibs.nattype", "__nat_unpickle"),
    ("pandas._libs.sparse", "BlockIndex"),
    ("pandas._libs.sparse", "IntIndex"),
    ("datetime", "datetime"),
    ("datetime", "date"),
    ("datetime", "time"),
    ("datetime", "timedelta"),
    ("datetime", "timezone"),
)


@functools.lru_cache(maxsize=1)
def _safe_functions() -> FrozenSet[int]:
    found = set()
    for module, name in _SAFE_FUNCTION_NAMES:
        try:
            found.add(id(_resolve(_numpy_core_module(module), name)))
        except (ImportError, AttributeError):
            continue
    return frozenset(found)


@functools.lru_cache(maxsize=1)
def _safe_bases() -> Tuple[type, ...]:
    """Data types whose subclasses may be rebuilt: arrays, frames, indexes, dtypes, scalars."""
    import numpy as np
    import pandas as pd
    from pandas.api.extensions import ExtensionArray, ExtensionDtype
    from pandas.core.generic import NDFrame

    bases = [np.ndarray, np.generic, np.dtype, NDFrame, pd.Index, ExtensionArray, ExtensionDtype]
    bases += [pd.Timestamp, pd.Timedelta, pd.Period, pd.Interval]
    optional = (
        ("pandas.core.internals.managers", "BaseBlockManager"),
        ("pandas.core.internals.blocks", "Block"),
        ("pandas._libs.internals", "BlockPlacement"),
        ("pandas.core.indexes.frozen", "FrozenList"),
        ("pandas.core.flags", "Flags"),
        ("pandas._libs.tslibs.offsets", "BaseOffset"),
    )
    for module, name in optional:
        try:
            bases.append(_resolve(module, name))
        except (ImportError, AttributeError):
            continue
    return tuple(bases)


def _resolve(module: str, name: str) -> Any:
    import importlib

    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    return obj


def _numpy_core_module(module: str) -> str:
    """Spell numpy's core package as the installed numpy does (``numpy._core`` from numpy 2 on)."""
    import numpy as np

    numpy2 = int(np.__version__.split(".", 1)[0]) >= 2
    old, new = ("numpy.core", "numpy._core") if numpy2 else ("numpy._core", "numpy.core")
    if module == old or module.startswith(old + "."):
        return new + module[len(old) :]
    return module


def _module_allowed(module: str) -> bool:
    root = module.split(".", 1)[0]
    return root in _ALLOWED_MODULE_ROOTS or module in _ALLOWED_PLAIN_MODULES


def _is_safe(module: str, name: str, obj: Any) -> bool:
    import numpy as np

    if module == "builtins":
        return name in _SAFE_BUILTINS
    if id(obj) in _safe_functions():
        return True
    if isinstance(obj, type) and module.split(".", 1)[0] in _ALLOWED_MODULE_ROOTS:
        # memmap's constructor opens (and may create) files: refuse it.
        return issubclass(obj, _safe_bases()) and not issubclass(obj, np.memmap)
    return False


def _pandas_unpickler_base() -> type:
    """pandas' compatibility unpickler (renamed classes of old pandas) if present, else pickle's."""
    try:
        from pandas.compat.pickle_compat import Unpickler  # type: ignore[attr-defined]

        return Unpickler
    except ImportError:  # pragma: no cover - depends on the pandas version
        return pickle._Unpickler  # type: ignore[attr-defined]


def _class_locations_map() -> dict:
    try:
        from pandas.compat.pickle_compat import _class_locations_map

        return _class_locations_map
    except ImportError:  # pragma: no cover - depends on the pandas version
        return {}


def _make_unpickler(handle: BinaryIO) -> pickle.Unpickler:
    base = _pandas_unpickler_base()
    renames = _class_locations_map()

    class _RestrictedUnpickler(base):  # type: ignore[misc, valid-type]
        def find_class(self, module: str, name: str) -> Any:
            if self.proto < 3 and self.fix_imports:  # python 2 names, as pickle itself maps them
                import _compat_pickle

                if (module, name) in _compat_pickle.NAME_MAPPING:
                    module, name = _compat_pickle.NAME_MAPPING[(module, name)]
                module = _compat_pickle.IMPORT_MAPPING.get(module, module)
            module, name = renames.get((module, name), (module, name))
            module = _numpy_core_module(module)
            if not _module_allowed(module):
                raise UnsafePickleError(
                    f"refusing to load {module}.{name} from a pickle: only numpy / pandas data types and "
                    "builtin containers are allowed"
                )
            try:
                obj = _resolve(module, name)
            except (ImportError, AttributeError) as error:
                raise UnsafePickleError(f"pickle references unknown {module}.{name}") from error
            if not _is_safe(module, name, obj):
                raise UnsafePickleError(
                    f"refusing to load {module}.{name} from a pickle: only numpy / pandas data types and "
                    "builtin containers are allowed"
                )
            return obj

        def persistent_load(self, pid: Any) -> Any:
            raise UnsafePickleError("refusing a pickle with persistent ids")

    return _RestrictedUnpickler(handle)


def safe_load(file: Union[str, os.PathLike, BinaryIO]) -> Any:
    """Load a pickle that may only contain numpy / pandas data and builtin containers.

    Parameters
    ----------
    file
        Path to the pickle, or a binary file object.

    Returns
    -------
    The unpickled object.

    Raises
    ------
    UnsafePickleError
        If the pickle references any other callable or type (e.g. ``os.system``), which is then
        neither imported nor called.
    """
    if isinstance(file, (str, os.PathLike)):
        with open(file, "rb") as handle:
            return safe_load(handle)
    return _make_unpickler(file).load()


def safe_loads(data: bytes) -> Any:
    """:func:`safe_load` for a bytes object."""
    return safe_load(io.BytesIO(data))

