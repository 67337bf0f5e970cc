"""``install_as_safetensors``: make ``import safetensors`` give tensorseal.

An import hook placed first on :data:`sys.meta_path` answers for the name
``safetensors`` and every ``safetensors.<sub>`` by handing back the
*same module object* as ``tensorseal`` / ``tensorseal.<sub>``: there is one
copy of each module and one ``SafetensorError`` class, whichever name the
code used. Submodules are still imported lazily (``import safetensors`` does
not import torch); ``safetensors._safetensors_rust`` names tensorseal's
native module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from typing import Optional

_ALIAS = "safetensors"
_TARGET = "tensorseal"
#: Names that differ between the two packages.
_RENAMED = {"_safetensors_rust": "_tensorseal"}


def _target_name(fullname: str) -> Optional[str]:
    if fullname == _ALIAS:
        return _TARGET
    if not fullname.startswith(_ALIAS + "."):
        return None
    parts = fullname.split(".")[1:]
    return ".".join([_TARGET] + [_RENAMED.get(p, p) for p in parts])


class _AliasLoader(importlib.abc.Loader):
    """Loads ``safetensors.X`` as the already imported ``tensorseal.X``."""

    def __init__(self, target: str):
        self._target = target

    def create_module(self, spec):
        return importlib.import_module(self._target)

    def exec_module(self, module) -> None:
        # module_from_spec() replaced the module's __spec__ with the alias
        # spec; put the real one back so the module keeps its own identity
        # (reload, pickling by module name and tooling see "tensorseal.X").
        real = _real_specs.get(self._target)
        if real is not None and getattr(module, "__spec__", None) is not real:
            module.__spec__ = real


#: The real __spec__ of each target module, recorded before aliasing.
_real_specs: dict = {}


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Answers ``safetensors`` and ``safetensors.*`` with tensorseal's modules."""

    def find_spec(self, fullname, path=None, target=None):
        target_name = _target_name(fullname)
        if target_name is None:
            return None
        try:
            module = importlib.import_module(target_name)
        except ModuleNotFoundError as e:
            if e.name == target_name:
                return None  # safetensors.<unknown>: a plain ModuleNotFoundError
            raise
        _real_specs.setdefault(target_name, module.__spec__)
        spec = importlib.machinery.ModuleSpec(
            fullname,
            _AliasLoader(target_name),
            origin=getattr(module.__spec__, "origin", None),
            is_package=hasattr(module, "__path__"),
        )
        if hasattr(module, "__path__"):
            spec.submodule_search_locations = list(module.__path__)
        return spec

    def __repr__(self) -> str:
        return f"<tensorseal alias finder: {_ALIAS} -> {_TARGET}>"


_FINDER = _AliasFinder()


def install_as_safetensors() -> None:
    """Makes every later ``import safetensors`` (and ``safetensors.torch``,
    ``safetensors.numpy``, …) in this process give tensorseal's modules,
    whether or not the ``safetensors`` package is installed.

    Call it once, before the program (or a library such as ``transformers``)
    first imports ``safetensors``: modules already imported under that name
    are replaced in :data:`sys.modules`, but objects a library took from them
    earlier are not. Calling it again does nothing.
    """
    if _FINDER not in sys.meta_path:
        sys.meta_path.insert(0, _FINDER)
    for name in [n for n in sys.modules if n == _ALIAS or n.startswith(_ALIAS + ".")]:
        module = sys.modules[name]
        target = _target_name(name)
        if target is not None and not getattr(module, "__name__", "").startswith(_TARGET):
            del sys.modules[name]
    importlib.invalidate_caches()


def uninstall_as_safetensors() -> None:
    """Undoes :func:`install_as_safetensors`: later imports of
    ``safetensors`` find the real package again (if installed)."""
    while _FINDER in sys.meta_path:
        sys.meta_path.remove(_FINDER)
    for name in [n for n in sys.modules if n == _ALIAS or n.startswith(_ALIAS + ".")]:
        if getattr(sys.modules[name], "__name__", "").startswith(_TARGET):
            del sys.modules[name]
