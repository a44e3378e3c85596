"""What the environment says about a request, read as requests reads it, for every strategy.

    environment_decides     whether a proxy or a .netrc must be looked up for requests
                            (otherwise nothing is: the crawl starts without either)
    Routes                  the proxy and the credentials requests would use for a URL,
                            looked up once per origin, in the form each library takes the
                            proxy (`proxy_for_requests`, `proxy_for_aiohttp`: aiohttp reads
                            the environment its own way, with no ALL_PROXY, no address
                            range in NO_PROXY...)
    ca_bundle, tls_context  the trusted certificate authorities: requests' choice, for all
    basic_authorization, refuse_unsendable_credentials
                            credentials (the environment's, a URL's own) as every strategy
                            sends them, or an error of ours that shows none of them

requests and its utilities, and yarl, are imported where they are used: the `async`
strategy needs requests only when the environment names a proxy or a .netrc, or a URL
holds credentials, and a `processes` fetch process's start waits for every module its
fork server loads.
"""

from __future__ import annotations

import base64
import functools
import logging
import os
import threading
import urllib.parse
from typing import TYPE_CHECKING, NamedTuple

from scraper.errors import ErrorKind, InvalidURL, TransportError

if TYPE_CHECKING:
    import ssl
    from collections.abc import Callable

_log = logging.getLogger(__name__)
ORIGINS_REMEMBERED = 4096  # origins whose route a crawl keeps (`Routes`)
UNPARSEABLE_PROXY = "the proxy the environment names for this URL is no valid URL"
UNSENDABLE_CREDENTIALS = (
    "credentials (the URL's, the .netrc's or the proxy's) hold a character outside Latin-1, "
    "which Basic authentication cannot send"
)


def environment_decides() -> bool:
    """True when the environment names a proxy (with its no_proxy exceptions) or a .netrc
    with credentials (where $NETRC names it, or in the home directory: where requests
    looks), for `Routes` to look up. Otherwise there is nothing to look up at all:
    requests' lookups cost about 2 ms of CPU a page in a large environment."""
    import urllib.request  # noqa: PLC0415 (5 ms: here, off the way to an async crawl's start)

    proxies = urllib.request.getproxies()
    proxies.pop("no", None)  # NO_PROXY alone changes nothing
    netrc_files = [os.environ["NETRC"]] if os.environ.get("NETRC") else ["~/.netrc", "~/_netrc"]
    # os.path.exists, as requests looks: a file it cannot see (an unreadable home, a name
    # too long) is no file to it, where Path.exists raises
    return bool(proxies) or any(os.path.exists(os.path.expanduser(name)) for name in netrc_files)


def ca_bundle() -> str:
    """Where the trusted certificate authorities are, a file or a directory, as requests
    looks: $REQUESTS_CA_BUNDLE, then $CURL_CA_BUNDLE, then certifi's bundle."""
    import certifi  # noqa: PLC0415 (7 ms, as environment_decides)

    return (
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    )


def tls_context() -> ssl.SSLContext:
    """A client context trusting `ca_bundle()`: the authorities requests trusts, so that a
    site's certificate passes or fails alike with every strategy (aiohttp alone would use
    the system's store). A bundle that cannot be loaded leaves a context trusting no one:
    every https URL then fails its handshake, `tls`, as with requests."""
    import ssl  # noqa: PLC0415 (5 ms: here, off the way to a `processes` crawl's start)

    bundle = ca_bundle()
    try:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ssl.SSLError):
        return ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, against nothing


class Route(NamedTuple):
    """How one request goes out, from the environment: through which proxy, in the form
    the library sending it takes (see `Routes`), and with which credentials, each a header
    value ready to send."""

    proxy: str | None = None
    proxy_authorization: str | None = None  # when the library does not send the proxy's
    authorization: str | None = None  # the .netrc's


class Routes:
    """The proxy and the .netrc credentials requests would use for a URL, decided by
    requests' own functions, once per origin (scheme, host and port) of a crawl: they read
    the environment and parse the .netrc again for every request (0.1-0.6 ms each here),
    on the thread that sends the requests (for `async`, its event loop's). For one crawl:
    what an origin's first request found holds for the rest of it.

    `proxy_route` makes the environment's proxy into a Route for the library that sends
    the requests. A URL's own credentials are used rather than the .netrc's, as aiohttp
    does (requests, left to look them up itself, sent the .netrc's)."""

    def __init__(self, proxy_route: Callable[[str], Route]) -> None:
        self._proxy_route = proxy_route
        self._for_origin = functools.lru_cache(maxsize=ORIGINS_REMEMBERED)(self._origin_route)

    def __call__(self, url: str) -> Route:
        scheme, netloc = urllib.parse.urlsplit(url)[:2]
        # as aiohttp and requests read a URL's own: "@" alone is none, ":pw@" is
        own_credentials, _, host = netloc.rpartition("@")
        route, netrc_credentials = self._for_origin(scheme, host)
        if netrc_credentials and not own_credentials:
            return route._replace(authorization=basic_authorization(*netrc_credentials))
        return route

    def _origin_route(self, scheme: str, host: str) -> tuple[Route, tuple[str, str] | None]:
        """The route to an origin, and the .netrc's credentials for it, encoded only where
        they are sent: a URL with its own never needs them."""
        from requests.utils import (  # noqa: PLC0415 (see the module's docstring)
            get_environ_proxies,
            select_proxy,
        )

        url = f"{scheme}://{host}/"
        proxy = select_proxy(url, get_environ_proxies(url))
        return (self._proxy_route(proxy) if proxy else Route()), self._netrc_credentials(url)

    def _netrc_credentials(self, url: str) -> tuple[str, str] | None:
        """requests' lookup, which keeps quiet about a .netrc it cannot read or parse: its
        credentials were silently not sent. (Python 3.10's netrc cannot parse a character
        outside Latin-1 at all.)"""
        from netrc import NetrcParseError  # noqa: PLC0415 (requests imports it anyway)

        from requests.utils import get_netrc_auth  # noqa: PLC0415

        try:
            return get_netrc_auth(url, raise_errors=True)
        except (NetrcParseError, OSError) as error:
            _say_once(f"the .netrc cannot be read, and no credentials come from it: {error}")
            return None


def _say_once(message: str) -> None:
    """Log `message` as a warning once in this process: every fetch worker of a crawl has
    routes of its own, and each said it (16 times with 16 threads)."""
    with _SAID_LOCK:
        if message in _SAID:
            return
        _SAID.add(message)
    _log.warning("%s", message)


_SAID: set[str] = set()
_SAID_LOCK = threading.Lock()


def proxy_for_requests(proxy: str) -> Route:
    """requests takes the proxy as the environment names it: its adapter sends the
    credentials it holds, to the proxy alone."""
    _with_scheme(proxy)  # parsed first, as requests parses it first
    return Route(proxy=proxy)


def proxy_for_aiohttp(proxy: str) -> Route:
    """aiohttp takes the proxy's URL without its credentials (it writes the URL into its
    errors), and the credentials as a header. One it cannot use is refused as requests
    refuses it: without PySocks, requests has no SOCKS either."""
    import yarl  # noqa: PLC0415 (see the module's docstring)
    from requests.utils import get_auth_from_url  # noqa: PLC0415

    try:  # a port that is no number is refused here, with no password in the message
        address = yarl.URL(_with_scheme(proxy))
    except ValueError:
        raise InvalidURL(UNPARSEABLE_PROXY) from None
    if address.scheme.startswith("socks"):
        raise TransportError(f"a {address.scheme} proxy is not supported", ErrorKind.PROTOCOL)
    if address.scheme not in ("http", "https") or not address.host:
        raise InvalidURL(f"the proxy {address.with_user(None)} is no HTTP proxy")
    user, password = get_auth_from_url(str(address))
    return Route(
        proxy=str(address.with_user(None)),
        proxy_authorization=basic_authorization(user, password) if user else None,
    )


def _with_scheme(proxy: str) -> str:
    """The proxy's URL as requests reads it first, a scheme added where it has none; one
    that cannot be parsed is InvalidURL with our message. requests' quotes the URL,
    password included, or a piece of it (urllib3 2.8: "'alice:s3' is not a valid host or
    port"), which no pattern can mask."""
    from requests.utils import prepend_scheme_if_needed  # noqa: PLC0415 (see the docstring)

    try:
        return prepend_scheme_if_needed(proxy, "http")
    except ValueError:
        raise InvalidURL(UNPARSEABLE_PROXY) from None


def basic_authorization(user: str, password: str) -> str:
    """Basic credentials as requests, aiohttp and Scrapy write them: Latin-1, then base64.

    A character outside Latin-1 raises InvalidURL with no piece of them in its message: the
    libraries' UnicodeEncodeError quoted the character, and where it was."""
    try:
        pair = f"{user}:{password}".encode("latin-1")
    except UnicodeEncodeError:
        raise InvalidURL(UNSENDABLE_CREDENTIALS) from None
    return f"Basic {base64.b64encode(pair).decode('ascii')}"


def refuse_unsendable_credentials(url: str) -> None:
    """Raise InvalidURL when the user and password written in `url` cannot be sent, before
    a library tries. They are read as requests reads them (percent-escapes decoded as
    UTF-8; one that is not UTF-8, `%FF`, becomes U+FFFD), which aiohttp does not do alike:
    it sent `%FF` as the three characters. Every request asks: most URLs hold no "@" at
    all, and are not parsed."""
    if "@" not in url:
        return
    try:
        if "@" not in urllib.parse.urlsplit(url).netloc:
            return
    except ValueError:  # "http://[::1/": the library's refusal says it, as before
        return
    from requests.utils import get_auth_from_url  # noqa: PLC0415 (see the module's docstring)

    basic_authorization(*get_auth_from_url(url))
