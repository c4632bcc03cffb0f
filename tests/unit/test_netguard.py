"""The SSRF guard. Every host here is an IP literal or localhost, so no DNS is needed."""

from __future__ import annotations

import ipaddress

import pytest

from swarm.exceptions import ToolError
from swarm.tools.netguard import check_url, is_public, resolve_checked, split_url


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.0.0.1:8080/admin",
        "http://127.1.2.3/",
        "http://localhost/",
        "http://LOCALHOST./",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[fd12:3456::1]/",
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
        "http://2130706433/",  # 127.0.0.1 as one decimal number
        "http://0177.0.0.1/",  # 127.0.0.1 in octal
    ],
)
def test_refuses_non_public_addresses(url: str) -> None:
    with pytest.raises(ToolError, match="non-public"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://8.8.8.8/",
        "gopher://8.8.8.8/",
        "javascript:alert(1)",
        "//8.8.8.8/",
        "8.8.8.8",
    ],
)
def test_refuses_other_schemes(url: str) -> None:
    with pytest.raises(ToolError, match=r"only http:// and https://"):
        check_url(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@8.8.8.8/",
        "http://user@8.8.8.8/",
        "http://8.8.8.8\\@127.0.0.1/",
    ],
)
def test_refuses_credentials(url: str) -> None:
    with pytest.raises(ToolError, match="credentials"):
        check_url(url)


@pytest.mark.parametrize("url", ["http:///path", "http://8.8.8.8:99999/", "http://a b.com/"])
def test_refuses_malformed(url: str) -> None:
    with pytest.raises(ToolError, match="refused"):
        check_url(url)


def test_allows_public_addresses() -> None:
    check_url("http://8.8.8.8/")
    check_url("https://1.1.1.1:8443/dns-query?x=1")
    check_url("https://[2606:4700:4700::1111]/")


def test_allow_list_cidr_and_address() -> None:
    check_url("http://127.0.0.1:8080/", allow=["127.0.0.1/32"])
    check_url("http://127.0.0.1/", allow=["127.0.0.1"])
    check_url("http://10.1.2.3/", allow=["10.0.0.0/8"])
    check_url("http://[::1]/", allow=["::1/128"])
    with pytest.raises(ToolError):
        check_url("http://127.0.0.2/", allow=["127.0.0.1/32"])
    with pytest.raises(ToolError):
        check_url("http://169.254.169.254/", allow=["10.0.0.0/8"])


def test_allow_list_host_name() -> None:
    check_url("http://localhost:9000/", allow=["localhost"])
    check_url("http://LocalHost./", allow=["localhost"])


def test_allow_list_with_port_allows_only_that_port() -> None:
    check_url("http://127.0.0.1:8080/", allow=["127.0.0.1:8080"])
    check_url("http://[::1]:8080/", allow=["[::1]:8080"])
    check_url("http://localhost:8080/", allow=["localhost:8080"])
    with pytest.raises(ToolError, match="non-public"):
        check_url("http://127.0.0.1:8081/", allow=["127.0.0.1:8080"])
    with pytest.raises(ToolError, match="non-public"):
        check_url("http://localhost:8081/", allow=["localhost:8080"])


def test_invalid_allow_list_entry_is_reported() -> None:
    with pytest.raises(ToolError, match="SWARM_WEB_ALLOW_HOSTS"):
        check_url("http://127.0.0.1/", allow=["10.0.0.0/99"])


def test_resolve_checked_returns_vetted_addresses() -> None:
    assert resolve_checked("8.8.8.8", 80) == ["8.8.8.8"]
    assert "127.0.0.1" in resolve_checked("localhost", 80, allow=["localhost"])


def test_unresolvable_host() -> None:
    with pytest.raises(ToolError, match="could not resolve"):
        resolve_checked("no-such-host.invalid", 80)


def test_split_url_defaults_ports() -> None:
    assert split_url("HTTPS://Example.com/x") == ("https", "example.com", 443)
    assert split_url("http://example.com:8080") == ("http", "example.com", 8080)


@pytest.mark.parametrize(
    ("addr", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("2002:808:808::", True),
        ("127.0.0.1", False),
        ("::ffff:8.8.8.8", False),
        ("198.18.0.1", False),
        ("255.255.255.255", False),
        ("ff02::1", False),
    ],
)
def test_is_public(addr: str, public: bool) -> None:
    assert is_public(ipaddress.ip_address(addr)) is public
