"""relulab core: contracts, registry, configs, run loop and run store.

Public entry points::

    from core import load_run, load_config, start_run, resume_run, get_registry
"""

from .config import load as load_config
from .loop import resume_run, start_run
from .registry import get_registry
from .store import Run, load_run

__all__ = ["load_run", "load_config", "start_run", "resume_run", "get_registry", "Run"]
