"""Pure hub state: roster, chat and mailbox (claims and board join later).

Nothing in this package touches a socket, a file or the clock.
"""

from .hubcore import HubCore
from .outcome import Event, Notice, Outcome, Send

__all__ = ["Event", "HubCore", "Notice", "Outcome", "Send"]
