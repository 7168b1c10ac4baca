"""``python -m synapse_channel`` runs the CLI."""

from .cli import main

main()
