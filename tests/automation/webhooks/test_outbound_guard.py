"""The SSRF guard (automation.webhooks.guard) and the per-call deadline of outbound.post."""

from __future__ import annotations

import time

import pytest

from automation.webhooks import guard, outbound
from tests.receiver import Reply

PUBLIC = "93.184.215.14"

REFUSED_URLS = [
    # IPv4 literals
    "http://127.0.0.1/",
    "http://127.8.9.10:8080/",
    "http://10.0.0.5/",
    "http://172.16.3.4/",
    "http://192.168.1.1/",
    "http://169.254.169.254/latest/meta-data/",  # cloud metadata
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://100.100.100.200/",  # Alibaba metadata (CGNAT)
    "http://0.0.0.0/",
    "http://192.0.0.192/",  # Oracle metadata
    "http://198.18.0.1/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
    # IPv4 spellings
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0177.0.0.1/",  # octal
    "http://0x7f.0.0.1/",  # hex
    "http://0x7f000001/",
    "http://127.1/",  # short form
    "http://017700000001/",
    # IPv6 literals
    "http://[::1]/",
    "http://[::]/",
    "http://[fe80::1]/",
    "http://[fc00::1]/",
    "http://[fd00:ec2::254]/",  # AWS metadata over IPv6
    "http://[ff02::1]/",
    "http://[2001:db8::1]/",
    # IPv4 embedded in IPv6
    "http://[::ffff:127.0.0.1]/",  # IPv4-mapped
    "http://[::ffff:7f00:1]/",
    "http://[::ffff:169.254.169.254]/",
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[2002:a9fe:a9fe::1]/",  # 6to4 of 169.254.169.254
    "http://[64:ff9b::7f00:1]/",  # NAT64 of 127.0.0.1
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[64:ff9b:1::a00:1]/",  # local-use NAT64
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]/",  # Teredo, client 127.0.0.1
    # not http, credentials, hostnames resolving inward
    "ftp://example.com/",
    "file:///etc/passwd",
    "http://user:pass@example.com/",
    "http://user@example.com/",
    "http://localhost/",
]


def fake_resolver(answers: dict[str, list[str]]) -> guard.Resolver:
    def resolve(host: str, port: int) -> list[str]:
        return answers.get(host, ["127.0.0.1"])

    return resolve


@pytest.mark.parametrize("url", REFUSED_URLS)
def test_dangerous_url_is_refused(url, settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(outbound.OutboundRefused):
        guard.check_url(url, resolver=fake_resolver({"example.com": [PUBLIC]}))


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/hook",
        "https://example.com:8443/hook?x=1",
        f"http://{PUBLIC}/",
        "http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
        "http://[::ffff:93.184.215.14]/",  # mapped, but public
        "http://[64:ff9b::5db8:d70e]/",  # NAT64 of a public address
    ],
)
def test_public_url_is_allowed(url, settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    target = guard.check_url(url, resolver=fake_resolver({"example.com": [PUBLIC]}))
    assert target.ip


def test_a_host_with_one_private_address_among_public_ones_is_refused(settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    with pytest.raises(outbound.OutboundRefused, match=r"10\.1\.2\.3"):
        guard.check_url(
            "http://example.com/",
            resolver=fake_resolver({"example.com": [PUBLIC, "10.1.2.3"]}),
        )


def test_dns_rebinding_is_refused_at_connection_time(settings, receiver):
    """Saved while it resolved to a public address; at send time it answers 127.0.0.1."""
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = []
    answers = iter([[PUBLIC], ["127.0.0.1"]])

    def rebinding(host: str, port: int) -> list[str]:
        return next(answers)

    url = f"http://rebind.example:{receiver.port}/hook"
    assert guard.check_url(url, resolver=rebinding).ip == PUBLIC
    with pytest.raises(outbound.OutboundRefused, match=r"127\.0\.0\.1"):
        outbound.post(url, body=b"{}", headers={}, resolver=rebinding)
    assert receiver.requests == []


def test_connection_goes_to_the_checked_address_with_the_original_host_header(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    resolved = []

    def once(host: str, port: int) -> list[str]:
        resolved.append(host)
        return ["127.0.0.1"]

    response = outbound.post(
        f"http://hooks.example:{receiver.port}/in?a=1", body=b"{}", headers={}, resolver=once
    )
    assert response.status_code == 200
    assert resolved == ["hooks.example"]  # resolved once, by the guard
    assert receiver.requests[0].headers["host"] == f"hooks.example:{receiver.port}"
    assert receiver.requests[0].path == "/in?a=1"


def test_redirect_to_loopback_is_not_followed(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receiver.reply(Reply(status=302, headers={"Location": "http://127.0.0.1:9/internal"}))
    response = outbound.post(receiver.url(), body=b"{}", headers={})
    assert response.status_code == 302
    assert len(receiver.requests) == 1


def test_allowed_networks_lift_the_guard_only_for_those_networks(settings):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    assert guard.check_url("http://127.0.0.1:8301/").ip == "127.0.0.1"
    with pytest.raises(outbound.OutboundRefused):
        guard.check_url("http://10.0.0.1/")
    with pytest.raises(outbound.OutboundRefused):
        guard.check_url("http://[::1]/")


def test_proxy_environment_variables_are_ignored(settings, receiver, monkeypatch):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    assert outbound.post(receiver.url(), body=b"{}", headers={}).status_code == 200
    assert len(receiver.requests) == 1


def test_drip_feeding_receiver_is_cut_off_at_the_deadline(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receiver.reply(Reply(status=200, drip_interval=0.05))
    started = time.monotonic()
    with pytest.raises(outbound.OutboundFailed, match="deadline"):
        outbound.post(receiver.url(), body=b"{}", headers={}, timeout=1.0)
    assert 1.0 <= time.monotonic() - started < 3.0  # generous: CI machines are shared


def test_slow_headers_are_cut_off_at_the_deadline(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receiver.reply(Reply(status=200, delay=3))
    started = time.monotonic()
    with pytest.raises(outbound.OutboundFailed, match="deadline"):
        outbound.post(receiver.url(), body=b"{}", headers={}, timeout=0.5)
    assert time.monotonic() - started < 2.5  # the server answers only after 3 s


def test_response_body_is_capped(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    receiver.reply(Reply(body=b"z" * 5000))
    response = outbound.post(receiver.url(), body=b"{}", headers={}, max_response_bytes=100)
    assert (response.body, response.truncated) == (b"z" * 100, True)


def test_a_connection_is_kept_alive_for_the_same_checked_address(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    for _ in range(3):
        assert outbound.post(receiver.url(), body=b"{}", headers={}).status_code == 200
    assert len({r.client_port for r in receiver.requests}) == 1


def test_a_kept_alive_connection_the_server_dropped_is_replaced(settings, receiver):
    settings.HERALD_OUTBOUND_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    outbound.post(receiver.url(), body=b"{}", headers={})
    receiver.drop_connections()
    response = outbound.post(receiver.url(), body=b"second", headers={})
    assert response.status_code == 200
    assert [r.body for r in receiver.requests] == [b"{}", b"second"]
    assert receiver.requests[0].client_port != receiver.requests[1].client_port
