"""Errors the runner reports to people: each carries a message meant to be read as is."""


class PgreplError(Exception):
    """A refused request or a failed operation, with a message that says why."""


class NotFound(PgreplError):
    pass


class Refused(PgreplError):
    """The request is understood but would break something (hyphen in a name, PK-less table in a delta herd...)."""
