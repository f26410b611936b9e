"""The stack clients live in tools/client.py (the tools use them too); tests import them from here or there."""
from tools.client import Api, Listener, Received, eventually  # noqa: F401
