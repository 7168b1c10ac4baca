"""synapse-channel: a local-first coordination hub for fleets of AI coding agents.

The public API for plugin authors is ``hookimpl`` (from :mod:`synapse_channel.hookspecs`)
and the modules documented in ``docs/plugins.md``.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
