"""The single exception a parser may raise."""


class ParseError(ValueError):
    """Bytes from the network that do not form a valid header.

    ``reason`` is a short stable identifier used as a drop counter name
    (e.g. ``"bad_checksum"``); the message is for humans.
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
