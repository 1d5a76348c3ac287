from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from automation.delivery import endpoint_create
from automation.models import Endpoint
from tests.receiver import Receiver, local_receiver


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with local_receiver() as r:
        yield r


@pytest.fixture
def allow_loopback(settings: Any) -> None:
    """Tests talk to a receiver on 127.0.0.1, which the guard refuses by default."""
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]


@pytest.fixture
def make_endpoint(
    db: None, allow_loopback: None, receiver: Receiver
) -> Callable[..., tuple[Endpoint, str]]:
    def make(path: str = "/hook", **kwargs: Any) -> tuple[Endpoint, str]:
        return endpoint_create(url=receiver.url(path), **kwargs)

    return make
