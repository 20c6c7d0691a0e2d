"""Shipped config files (plain Python; see core.config for the layout)."""
