"""How the Alertmanager bridge reaches Alertmanager: credentials (bearer token or basic auth, from a
file or a variable, never printed), TLS (a CA file, a client certificate) and which answers are final."""

from __future__ import annotations

import os
import ssl
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from blipwatch.stream_app.config import ConfigError


#: Answers that mean "these alerts are wrong", not "try again": the bridge logs them and moves on.
FINAL_REFUSALS = frozenset({400, 422})


def redact(url: str | None) -> str:
    """The URL with any user-info replaced, for logs and messages.

    >>> redact("https://admin:s3cret@am.example:9093/x"), redact("http://127.0.0.1:9093")
    ('https://***@am.example:9093/x', 'http://127.0.0.1:9093')
    """
    parsed = urllib.parse.urlsplit(url or "")
    if "@" not in parsed.netloc:
        return url or ""
    return urllib.parse.urlunsplit(parsed._replace(netloc="***@" + parsed.netloc.rpartition("@")[2]))


def split_credentials(url: str) -> tuple[str, str | None]:
    """The URL without user-info, and that user-info as a basic ``Authorization`` header value.

    >>> split_credentials("http://user:p%40ss@am:9093")
    ('http://am:9093', 'Basic dXNlcjpwQHNz')
    """
    parsed = urllib.parse.urlsplit(url)
    if parsed.username is None:
        return url, None
    clean = urllib.parse.urlunsplit(parsed._replace(netloc=parsed.netloc.rpartition("@")[2]))
    return clean, basic_header(urllib.parse.unquote(parsed.username), urllib.parse.unquote(parsed.password or ""))


def basic_header(user: str, password: str) -> str:
    import base64

    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def check_url(url: str | None, what: str) -> str:
    parsed = urllib.parse.urlparse(url or "")
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise ConfigError(f"{what} {redact(url)!r} is not an http(s) URL like http://127.0.0.1:9093")
    return url.rstrip("/")


@dataclass(frozen=True)
class HttpAccess:
    """How the bridge authenticates to Alertmanager (or the proxy in front of it) and trusts it.

    ``authorization``: the ``Authorization`` header value (``Bearer ...`` or ``Basic ...``);
    ``ca_file``: the CA that signed Alertmanager's certificate; ``client_cert``/``client_key``:
    a client certificate for mutual TLS. ``from_env`` reads them from ``BLIPWATCH_ALERTMANAGER_*``.
    """

    authorization: str | None = field(default=None, repr=False)
    ca_file: str | None = None
    client_cert: str | None = None
    client_key: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, bearer_token_file: str | None = None,
                 basic_auth_file: str | None = None, ca_file: str | None = None, client_cert: str | None = None,
                 client_key: str | None = None) -> "HttpAccess":
        """Secrets from a file (``--bearer-token-file``, ``--basic-auth-file`` or ``..._FILE``
        variables) or a variable (``BLIPWATCH_ALERTMANAGER_BEARER_TOKEN``, ``..._BASIC_AUTH`` as
        ``user:password``); at most one of the two kinds.

        >>> HttpAccess.from_env({"BLIPWATCH_ALERTMANAGER_BEARER_TOKEN": "abc"}).authorization
        'Bearer abc'
        >>> HttpAccess.from_env({"BLIPWATCH_ALERTMANAGER_BASIC_AUTH": "u:p"}).authorization
        'Basic dTpw'
        """
        env = os.environ if env is None else env

        def value(name: str, path: str | None) -> str | None:
            path = path or env.get(f"BLIPWATCH_ALERTMANAGER_{name}_FILE", "").strip() or None
            if path:
                try:
                    return Path(path).read_text(encoding="utf-8").strip() or None
                except (OSError, UnicodeDecodeError) as exc:
                    raise ConfigError(f"cannot read the Alertmanager {name.lower().replace('_', ' ')} file "
                                      f"{path}: {getattr(exc, 'strerror', None) or exc}") from None
            return env.get(f"BLIPWATCH_ALERTMANAGER_{name}", "").strip() or None

        token, basic = value("BEARER_TOKEN", bearer_token_file), value("BASIC_AUTH", basic_auth_file)
        if token and basic:
            raise ConfigError("Alertmanager: give a bearer token or basic auth, not both")
        if basic and ":" not in basic:
            raise ConfigError("Alertmanager basic auth must be user:password")
        authorization = f"Bearer {token}" if token else basic_header(*basic.split(":", 1)) if basic else None
        paths = {"CA_FILE": ca_file, "CLIENT_CERT": client_cert, "CLIENT_KEY": client_key}
        for name in paths:
            paths[name] = paths[name] or env.get(f"BLIPWATCH_ALERTMANAGER_{name}", "").strip() or None
            if paths[name] and not Path(paths[name]).is_file():
                raise ConfigError(f"Alertmanager {name.lower().replace('_', ' ')} {paths[name]!r} does not exist")
        if paths["CLIENT_KEY"] and not paths["CLIENT_CERT"]:
            raise ConfigError("Alertmanager client key given without a client certificate")
        access = cls(authorization, paths["CA_FILE"], paths["CLIENT_CERT"], paths["CLIENT_KEY"])
        access.ssl_context()  # a wrong file is a clear error now, not at the first post
        return access

    def ssl_context(self) -> ssl.SSLContext:
        try:
            context = ssl.create_default_context(cafile=self.ca_file)
            if self.client_cert:
                context.load_cert_chain(self.client_cert, self.client_key)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigError(f"Alertmanager TLS files ({self.ca_file or 'system CAs'}, "
                              f"{self.client_cert or 'no client cert'}): {reason}") from None
        return context
