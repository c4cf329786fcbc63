"""bench/push_profile.py's hook: with PGREPL_CPROFILE=FILE, every Python process started with this directory on
PYTHONPATH runs under cProfile and writes FILE.<pid> when it exits."""

import os

if os.environ.get("PGREPL_CPROFILE"):
    import atexit
    import cProfile

    _profile = cProfile.Profile()
    _profile.enable()

    def _dump() -> None:
        _profile.disable()
        _profile.dump_stats(f"{os.environ['PGREPL_CPROFILE']}.{os.getpid()}")

    atexit.register(_dump)
