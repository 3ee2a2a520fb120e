"""Stateless codecs for the headers the stack speaks.

Every module here is pure: no I/O, no clock, no randomness. Parsers are named
``parse_untrusted`` because they read attacker-controlled bytes; they either
return a value or raise :class:`ParseError`, nothing else.
"""

from .errors import ParseError

__all__ = ["ParseError"]
