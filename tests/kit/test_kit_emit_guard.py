"""A service may only emit its own events: another service's type would leave on the wrong exchange."""
from unittest.mock import MagicMock

import pytest

from kit.outbox import Outbox


def test_emitting_another_services_event_is_refused_before_anything_is_written():
    db = MagicMock()
    outbox = Outbox(db, "catalog")
    with pytest.raises(ValueError, match="belongs to orders"):
        outbox.add(session=None, event_type="order.paid", data={}, subject="ord_1")
    db["outbox"].insert_one.assert_not_called()
