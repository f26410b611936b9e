"""The event publisher lives in tools/bus.py (the commission bench uses it too)."""
from tools.bus import (Bus, Story, consumed, groupbuy_failed, iso, line, now, share_created, share_clicked,  # noqa: F401
                       uid, user_joined)
