"""Find the non-Python files we ship: ``hooks/``, ``shell/`` and ``deploy/``.

In a built wheel they live inside the package (``synapse_channel/_data/...``,
put there by hatch's force-include); in an editable install they are the
top-level folders of the checkout. This one function knows both, and a test
builds the wheel and checks it.
"""

from __future__ import annotations

from pathlib import Path

KINDS = ("hooks", "shell", "deploy")


def data_path(kind: str) -> Path:
    """The folder holding ``kind`` files, wherever this copy was installed from."""
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; one of {', '.join(KINDS)}")
    packaged = Path(__file__).resolve().parent / "_data" / kind
    if packaged.is_dir():
        return packaged
    checkout = Path(__file__).resolve().parents[2] / kind
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"synapse-channel's {kind}/ files are missing from this installation")
