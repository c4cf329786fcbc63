"""`pgrepl`: bucardo_ctl's command lines, with pgrepl in its place.

Argument parsing and output formatting only: every action is a call into catalog, capture or worker.
Exit codes: 0 done; 1 error or refused; 2 bad usage; 3 a kicked run failed; 4 `kick --wait` timed out.
One module per family of verbs (define, views, operate), `args` for what they share, `help` for the texts;
a new verb is a function in its family's module, an entry in `main.dispatch` and one in `help.HELP`.
"""

from .args import EXIT_ERROR, EXIT_KICK_FAILED, EXIT_KICK_TIMEOUT, EXIT_OK, EXIT_USAGE, Args, Usage, parse  # noqa: F401
from .main import dispatch, main  # noqa: F401
