from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import trustme

from automation.webhooks.models import Endpoint
from automation.webhooks.services import endpoint_create
from tests.receiver import Receiver, local_receiver, server_tls_context


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


@pytest.fixture
def trusted_ca(settings: Any, tmp_path: Path) -> trustme.CA:
    """A private CA Herald trusts: its certificate is the HERALD_OUTBOUND_CA_BUNDLE."""
    ca = trustme.CA()
    bundle = tmp_path / "private-ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    settings.HERALD_OUTBOUND_CA_BUNDLE = str(bundle)
    return ca


@pytest.fixture
def https_receiver() -> Iterator[Callable[[trustme.LeafCert], Receiver]]:
    """Start local HTTPS receivers presenting a given certificate (closed after the test)."""
    with ExitStack() as stack:
        yield lambda cert: stack.enter_context(local_receiver(tls=server_tls_context(cert)))
