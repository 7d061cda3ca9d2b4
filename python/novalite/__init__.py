"""novalite: OpenStack Nova rebuilt lean and fast."""

__version__ = "0.1.0"
