"""Work in flight per client: one client cannot take every slot of the server."""

from __future__ import annotations

from contextlib import ExitStack

import pytest

from studio.limits import ClientLimits, TooBusy


def test_one_client_gets_a_clear_refusal_beyond_its_work_in_flight_and_others_do_not() -> None:
    limits = ClientLimits(per_client=2)
    with ExitStack() as held:
        for client in ("10.0.0.1", "10.0.0.1", "10.0.0.2"):
            held.enter_context(limits.slot(client))
        with pytest.raises(TooBusy, match="2 uploads of yours"), limits.slot("10.0.0.1"):
            pass
    with limits.slot("10.0.0.1"), limits.slot("10.0.0.1"):  # freed once the work is done
        pass
