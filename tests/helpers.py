"""The stack clients live in tools/client.py (the tools use them too); tests import them from here or there."""
from pymongo import monitoring

from tools.client import Api, Listener, Received, eventually  # noqa: F401


class CommandsSeen(monitoring.CommandListener):
    """What `note(event)` makes of each command a MongoClient starts, in order, in `seen` (None: not kept). Give it
    to the client: MongoClient(uri, event_listeners=[CommandsSeen(note)])."""

    def __init__(self, note):
        self.note, self.seen = note, []

    def started(self, event):
        noted = self.note(event)
        if noted is not None:
            self.seen.append(noted)

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass
