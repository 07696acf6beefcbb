"""rlcore's own environments. Every module here registers its ``rlcore/<Name>-v0`` id on import."""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
