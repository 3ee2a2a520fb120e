"""Command-line programs: ``python -m trio_netstack.tools.<name>``."""
