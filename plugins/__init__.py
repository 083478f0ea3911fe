"""Plugins bundled with flashplug; each uses only the public plugin API."""
