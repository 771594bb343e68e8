"""DataReference parsing and construction with Go ``net/url`` semantics (docs/flyte-compatibility.md#references).

Flyte parses references with Go's ``net/url``: ``url.Parse`` for :func:`split_reference`, and
``url.Parse`` + ``URL.ResolveReference`` + ``URL.String`` for :func:`construct_reference`. Python's
``urllib.parse`` differs in many details (``urljoin`` does not make scheme-less paths absolute, it does
not re-escape, it accepts bad escapes and ports...), so the parts of ``net/url`` that matter here are
ported below as private helpers.

Go strings are byte strings. To index them the same way, the helpers work on "byte text": a ``str``
whose every character is one UTF-8 byte (``s.encode("utf-8").decode("latin-1")``). Percent-decoding
can then produce any byte, exactly as in Go; only the public results are turned back into real text.
"""

from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

from .errors import InvalidReferenceError

__all__ = ["DataReference", "construct_reference", "escape_key", "split_reference"]

_SEPARATOR = "/"


class DataReference(str):
    """A storage location such as ``s3://bucket/key`` (a ``str`` subclass)."""

    __slots__ = ()

    @classmethod
    def new(cls, scheme: str, container: str, key: str) -> DataReference:
        """``<scheme>://<container>/<key>`` with no escaping (Go ``NewDataReference``)."""
        return cls(f"{scheme}://{container}/{key}")

    # Deliberately replaces str.split (Go's DataReference.Split); use str(ref).split(...) for the str method.
    def split(self) -> tuple[str, str, str]:  # type: ignore[override]
        """``(scheme, container, key)``; raises ``InvalidReferenceError`` when unparsable."""
        return split_reference(self)


@lru_cache(maxsize=65536)
def split_reference(ref: str) -> tuple[str, str, str]:
    """Split a reference into ``(scheme, container, key)`` like Go ``DataReference.Split``.

    The scheme is lower-cased; the container is the host including any port (or, for ``abfs`` and
    ``abfss``, a non-empty user name); the key is the percent-decoded path with every leading and
    trailing ``/`` trimmed. Query, fragment and other userinfo are dropped; ``..`` is not resolved.
    """
    if not isinstance(ref, str):
        raise InvalidReferenceError(f"a reference must be a str, not {type(ref).__name__}")
    try:
        url = _parse(_to_bytes(ref))
    except _URLError as err:
        raise InvalidReferenceError(str(err)) from None
    container = url.host
    if url.scheme in ("abfs", "abfss") and url.user is not None and url.user[0]:
        container = url.user[0]
    key = url.path.strip(_SEPARATOR)
    return url.scheme, _from_bytes(container, ref, "container"), _from_bytes(key, ref, "key")


def construct_reference(base: str, *keys: str) -> DataReference:
    """Join ``keys`` under ``base`` like Go ``URLPathConstructor.ConstructReference``.

    A ``/`` is appended to ``base`` if missing, every key is trimmed of ``/`` on both ends, the keys
    are joined with ``/`` and the result is resolved against the base as an RFC 3986 reference (dot
    segments are removed) and re-escaped the way Go's ``URL.String`` does.
    """
    if not isinstance(base, str):
        raise InvalidReferenceError(f"a base reference must be a str, not {type(base).__name__}")
    for key in keys:
        if not isinstance(key, str):
            raise InvalidReferenceError(
                f"Reference is of an invalid format [{base}]: a key must be a str, not {type(key).__name__}"
            )
    # Plain str from here on: a DataReference's split() is not str.split().
    base = str(base)
    rel_text = _SEPARATOR.join([str(key).strip(_SEPARATOR) for key in keys])
    base_text = base if base.endswith(_SEPARATOR) else base + _SEPARATOR
    try:
        base_url = _parse_base(base_text)
        rel_url = _parse(_to_bytes(rel_text))
    except (_URLError, InvalidReferenceError) as err:
        raise InvalidReferenceError(f"Reference is of an invalid format [{base}]: {err}") from None
    out = _url_string(_resolve_reference(base_url, rel_url))
    if out.isascii():
        return DataReference(out)
    try:
        return DataReference(out.encode("latin-1").decode("utf-8"))
    except UnicodeDecodeError:  # pragma: no cover - raw parts are cut at ASCII bytes of valid UTF-8
        raise InvalidReferenceError(
            f"Reference is of an invalid format [{base}]: the result is not valid UTF-8"
        ) from None


def escape_key(key: str) -> str:
    """Percent-escape ``key`` for use as the path of a reference (Go ``EscapedPath`` rules).

    ``/`` is kept, so ``split()`` of ``<scheme>://<container>/<escape_key(key)>`` gives ``key`` back
    (for keys without leading or trailing ``/``).
    """
    return _escape(_to_bytes(key), _ENCODE_PATH)


# --------------------------------------------------------------------------------------------------
# Byte text conversions
# --------------------------------------------------------------------------------------------------


def _to_bytes(text: str) -> str:
    """``text`` as byte text (one character per UTF-8 byte)."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8").decode("latin-1")
    except UnicodeEncodeError:
        raise InvalidReferenceError(f"reference {text!r} is not valid text (it holds a lone surrogate)") from None


def _from_bytes(data: str, ref: str, what: str) -> str:
    """Real text from byte text; percent-escapes that decode to invalid UTF-8 are rejected."""
    if data.isascii():
        return data
    try:
        return data.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidReferenceError(
            f"parse {_go_quote(_to_bytes(ref))}: the percent-decoded {what} is not valid UTF-8"
        ) from None


_GO_CONTROL_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def _go_quote(data: str) -> str:
    """Go ``strconv.Quote`` of byte text (used in error messages, like Go's ``%q``)."""
    text = data.encode("latin-1").decode("utf-8", "surrogateescape")
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif 0xDC80 <= code <= 0xDCFF:  # an invalid UTF-8 byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable():
            out.append(ch)
        elif ch in _GO_CONTROL_ESCAPES:
            out.append(_GO_CONTROL_ESCAPES[ch])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --------------------------------------------------------------------------------------------------
# Port of Go net/url (parse.go)
# --------------------------------------------------------------------------------------------------


class _URLError(Exception):
    """A Go ``*url.Error`` from ``Parse``: ``parse "<url>": <reason>``."""


class _ParseError(Exception):
    """The inner error of a failed parse (the ``<reason>`` of :class:`_URLError`)."""


_ENCODE_PATH = 1
_ENCODE_PATH_SEGMENT = 2
_ENCODE_HOST = 3
_ENCODE_ZONE = 4
_ENCODE_USER_PASSWORD = 5
_ENCODE_QUERY_COMPONENT = 6
_ENCODE_FRAGMENT = 7
_ALL_ENCODINGS = (
    _ENCODE_PATH,
    _ENCODE_PATH_SEGMENT,
    _ENCODE_HOST,
    _ENCODE_ZONE,
    _ENCODE_USER_PASSWORD,
    _ENCODE_QUERY_COMPONENT,
    _ENCODE_FRAGMENT,
)


def _go_should_escape(c: int, mode: int) -> bool:
    """Go ``shouldEscape``: does byte ``c`` need percent-encoding in the given URL part."""
    if 0x61 <= c <= 0x7A or 0x41 <= c <= 0x5A or 0x30 <= c <= 0x39:
        return False
    ch = chr(c)
    if mode in (_ENCODE_HOST, _ENCODE_ZONE) and ch in "!$&'()*+,;=:[]<>\"":
        return False
    if ch in "-_.~":
        return False
    if ch in "$&+,/:;=?@":
        if mode == _ENCODE_PATH:
            return ch == "?"
        if mode == _ENCODE_PATH_SEGMENT:
            return ch in "/;,?"
        if mode == _ENCODE_USER_PASSWORD:
            return ch in "@/?:"
        if mode == _ENCODE_QUERY_COMPONENT:
            return True
        if mode == _ENCODE_FRAGMENT:
            return False
    return not (mode == _ENCODE_FRAGMENT and ch in "!()*")


_SHOULD_ESCAPE = {mode: tuple(_go_should_escape(c, mode) for c in range(256)) for mode in _ALL_ENCODINGS}
# str.translate tables for escape(): byte -> "%XX" (upper-case hex, like Go).
_ESCAPE_TABLES = {mode: {c: f"%{c:02X}" for c in range(256) if table[c]} for mode, table in _SHOULD_ESCAPE.items()}


def _char_class(chars: set[int]) -> str:
    return "".join(f"\\x{c:02x}" for c in sorted(chars))


_NEEDS_ESCAPE = {
    mode: re.compile("[" + _char_class({c for c in range(256) if table[c]}) + "]")
    for mode, table in _SHOULD_ESCAPE.items()
}
# validEncoded(): pchar sub-delims, ':' '@', '[' ']' and '%' are fine, anything else must not need escaping.
_VALID_ENCODED_EXTRA = {ord(ch) for ch in "!$&'()*+,;=:@[]%"}
_INVALID_ENCODED = {
    mode: re.compile(
        "[^" + _char_class({c for c in range(256) if c in _VALID_ENCODED_EXTRA or not _SHOULD_ESCAPE[mode][c]}) + "]"
    )
    for mode in (_ENCODE_PATH, _ENCODE_FRAGMENT)
}
_HEX = frozenset("0123456789abcdefABCDEF")
_BAD_PERCENT = re.compile(r"%(?![0-9a-fA-F]{2})")
_PERCENT_SEQ = re.compile(r"%([0-9a-fA-F]{2})")
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_INVALID_USERINFO = re.compile(r"[^A-Za-z0-9\-._:~!$&'()*+,;=%@]")
_VALID_PORT = re.compile(r":[0-9]*")


def _escape_error(seq: str) -> _ParseError:
    return _ParseError(f"invalid URL escape {_go_quote(seq)}")


def _percent_repl(match: re.Match[str]) -> str:
    return chr(int(match.group(1), 16))


def _unescape(s: str, mode: int) -> str:
    """Go ``unescape``: percent-decode byte text, with Go's validation for hosts and zones."""
    if mode in (_ENCODE_HOST, _ENCODE_ZONE):
        _check_host_escapes(s, mode)
    elif "%" in s:
        bad = _BAD_PERCENT.search(s)
        if bad is not None:
            start = bad.start()
            raise _escape_error(s[start : start + 3])
    if "%" in s:
        s = _PERCENT_SEQ.sub(_percent_repl, s)
    if mode == _ENCODE_QUERY_COMPONENT:  # pragma: no cover - kept for fidelity; queries are never decoded here
        s = s.replace("+", " ")
    return s


def _check_host_escapes(s: str, mode: int) -> None:
    should_escape = _SHOULD_ESCAPE[mode]
    host_escape = _SHOULD_ESCAPE[_ENCODE_HOST]
    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "%":
            seq = s[i : i + 3]
            if i + 2 >= n or s[i + 1] not in _HEX or s[i + 2] not in _HEX:
                raise _escape_error(seq)
            # RFC 3986: in a host, %-encoding is only for non-ASCII bytes; RFC 6874 adds %25.
            if mode == _ENCODE_HOST and int(s[i + 1], 16) < 8 and seq != "%25":
                raise _escape_error(seq)
            if mode == _ENCODE_ZONE:
                value = int(seq[1:], 16)
                if seq != "%25" and value != 0x20 and host_escape[value]:
                    raise _escape_error(seq)
            i += 3
        else:
            code = ord(c)
            if code < 0x80 and should_escape[code]:
                raise _ParseError(f"invalid character {_go_quote(c)} in host name")
            i += 1


def _escape(s: str, mode: int) -> str:
    """Go ``escape`` (never used for query components here, so no ``+`` for spaces)."""
    if _NEEDS_ESCAPE[mode].search(s) is None:
        return s
    return s.translate(_ESCAPE_TABLES[mode])


def _valid_encoded(s: str, mode: int) -> bool:
    return _INVALID_ENCODED[mode].search(s) is None


class _URL:
    """The fields of Go's ``url.URL`` that matter here; ``user`` is ``(username, password or None)``."""

    __slots__ = (
        "force_query",
        "fragment",
        "host",
        "omit_host",
        "opaque",
        "path",
        "raw_fragment",
        "raw_path",
        "raw_query",
        "scheme",
        "user",
    )

    def __init__(self) -> None:
        self.scheme = ""
        self.opaque = ""
        self.user: tuple[str, str | None] | None = None
        self.host = ""
        self.path = ""
        self.raw_path = ""
        self.omit_host = False
        self.force_query = False
        self.raw_query = ""
        self.fragment = ""
        self.raw_fragment = ""

    def copy(self) -> _URL:
        other = _URL.__new__(_URL)
        other.scheme = self.scheme
        other.opaque = self.opaque
        other.user = self.user
        other.host = self.host
        other.path = self.path
        other.raw_path = self.raw_path
        other.omit_host = self.omit_host
        other.force_query = self.force_query
        other.raw_query = self.raw_query
        other.fragment = self.fragment
        other.raw_fragment = self.raw_fragment
        return other


def _parse(raw: str) -> _URL:
    """Go ``url.Parse`` of byte text; raises :class:`_URLError`."""
    without_frag, _, frag = raw.partition("#")
    try:
        url = _parse_no_fragment(without_frag)
    except _ParseError as err:
        raise _URLError(f"parse {_go_quote(without_frag)}: {err}") from None
    if not frag:
        return url
    try:
        _set_fragment(url, frag)
    except _ParseError as err:
        raise _URLError(f"parse {_go_quote(raw)}: {err}") from None
    return url


@lru_cache(maxsize=1024)
def _parse_base(text: str) -> _URL:
    """:func:`_parse` of a base reference, cached: callers build many references under one base.

    The returned object is shared, so it must never be mutated (``_resolve_reference`` only reads it).
    """
    return _parse(_to_bytes(text))


def _get_scheme(raw: str) -> tuple[str, str]:
    """Go ``getScheme``: ``(scheme, rest)``.

    Go scans for letters, then letters, digits, ``+-.``, up to a ``:``; any other character (or a
    leading digit or ``+-.``) means there is no scheme, and a leading ``:`` is an error.
    """
    match = _SCHEME.match(raw)
    if match is not None:
        end = match.end()
        return raw[: end - 1], raw[end:]
    if raw.startswith(":"):
        raise _ParseError("missing protocol scheme")
    return "", raw


def _parse_no_fragment(raw: str) -> _URL:
    """Go ``parse(rawURL, viaRequest=false)``."""
    if _CONTROL.search(raw) is not None:
        raise _ParseError("net/url: invalid control character in URL")
    url = _URL()
    if raw == "*":
        url.path = "*"
        return url
    scheme, rest = _get_scheme(raw)
    url.scheme = scheme.lower()
    if rest.endswith("?") and rest.count("?") == 1:
        url.force_query = True
        rest = rest[:-1]
    else:
        rest, _, url.raw_query = rest.partition("?")

    if not rest.startswith("/"):
        if url.scheme:
            # Rootless paths are opaque (RFC 3986).
            url.opaque = rest
            return url
        # RFC 3986 §3.3: the first segment of a relative-path reference cannot contain a colon.
        if ":" in rest.partition("/")[0]:
            raise _ParseError("first path segment in URL cannot contain colon")

    if (url.scheme or not rest.startswith("///")) and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        rest = slash + path
        url.user, url.host = _parse_authority(authority)
    elif url.scheme and rest.startswith("/"):
        url.omit_host = True
    _set_path(url, rest)
    return url


def _parse_authority(authority: str) -> tuple[tuple[str, str | None] | None, str]:
    i = authority.rfind("@")
    host = _parse_host(authority if i < 0 else authority[i + 1 :])
    if i < 0:
        return None, host
    userinfo = authority[:i]
    if _INVALID_USERINFO.search(userinfo) is not None:
        raise _ParseError("net/url: invalid userinfo")
    if ":" not in userinfo:
        return (_unescape(userinfo, _ENCODE_USER_PASSWORD), None), host
    username, _, password = userinfo.partition(":")
    return (_unescape(username, _ENCODE_USER_PASSWORD), _unescape(password, _ENCODE_USER_PASSWORD)), host


def _valid_optional_port(port: str) -> bool:
    return not port or _VALID_PORT.fullmatch(port) is not None


def _parse_host(host: str) -> str:
    """Go ``parseHost`` (Go 1.26: bracketed hosts must be IPv6, and only one colon outside brackets)."""
    if host.startswith("["):
        # An IP-literal (RFC 3986 and RFC 6874): "[fe80::1]", "[fe80::1%25en0]", "[fe80::1]:80".
        i = host.rfind("]")
        if i < 0:
            raise _ParseError("missing ']' in host")
        colon_port = host[i + 1 :]
        if not _valid_optional_port(colon_port):
            raise _ParseError(f"invalid port {_go_quote(colon_port)} after host")
        zone = host.find("%25", 0, i)
        if zone >= 0:
            unescaped = (
                _unescape(host[:zone], _ENCODE_HOST)
                + _unescape(host[zone:i], _ENCODE_ZONE)
                + _unescape(host[i:], _ENCODE_HOST)
            )
        else:
            unescaped = _unescape(host, _ENCODE_HOST)
        literal = unescaped[1 : unescaped.rfind("]")]
        _check_ip_literal(literal)
        return unescaped
    i = host.find(":")
    if i >= 0:
        colon_port = host[i:]
        if not _valid_optional_port(colon_port):
            raise _ParseError(f"invalid port {_go_quote(colon_port)} after host")
    return _unescape(host, _ENCODE_HOST)


def _check_ip_literal(literal: str) -> None:
    """Only an IPv6 address may be enclosed in brackets (RFC 3986; Go >= 1.24.8 / 1.25.2)."""
    try:
        if ipaddress.ip_address(literal).version == 4:
            raise _ParseError("invalid IP-literal")
        return
    except ValueError:
        pass
    raise _ParseError(f"invalid host: ParseAddr({_go_quote(literal)}): unable to parse IP")


def _set_path(url: _URL, p: str) -> None:
    """Go ``URL.setPath``: keep ``RawPath`` only when it differs from the default escaping."""
    path = _unescape(p, _ENCODE_PATH)
    url.path = path
    url.raw_path = "" if _escape(path, _ENCODE_PATH) == p else p


def _escaped_path(url: _URL) -> str:
    """Go ``URL.EscapedPath``."""
    raw = url.raw_path
    if raw and _valid_encoded(raw, _ENCODE_PATH):
        try:
            if _unescape(raw, _ENCODE_PATH) == url.path:
                return raw
        except _ParseError:
            pass
    if url.path == "*":
        return "*"
    return _escape(url.path, _ENCODE_PATH)


def _set_fragment(url: _URL, f: str) -> None:
    frag = _unescape(f, _ENCODE_FRAGMENT)
    url.fragment = frag
    url.raw_fragment = "" if _escape(frag, _ENCODE_FRAGMENT) == f else f


def _escaped_fragment(url: _URL) -> str:
    raw = url.raw_fragment
    if raw and _valid_encoded(raw, _ENCODE_FRAGMENT):
        try:
            if _unescape(raw, _ENCODE_FRAGMENT) == url.fragment:
                return raw
        except _ParseError:
            pass
    return _escape(url.fragment, _ENCODE_FRAGMENT)


def _resolve_path(base: str, ref: str) -> str:
    """Go ``resolvePath``: merge the paths and remove dot segments; the result is absolute."""
    if not ref:
        full = base
    elif ref[0] != "/":
        full = base[: base.rfind("/") + 1] + ref
    else:
        full = ref
    if not full:
        return ""
    dst = ""  # what Go's buffer holds after its leading '/'
    first = True
    elem = ""
    for elem in full.split("/"):
        if elem == ".":
            first = False
            continue
        if elem == "..":
            index = dst.rfind("/")
            if index == -1:
                dst = ""
                first = True
            else:
                dst = dst[:index]
            continue
        dst = dst + elem if first else dst + "/" + elem
        first = False
    result = "/" + dst
    if elem in (".", ".."):
        result += "/"
    # Go wrote an initial '/' but does not want two.
    if len(result) > 1 and result[1] == "/":
        result = result[1:]
    return result


def _resolve_reference(base: _URL, ref: _URL) -> _URL:
    """Go ``URL.ResolveReference`` (RFC 3986 §5.2)."""
    url = ref.copy()
    if not ref.scheme:
        url.scheme = base.scheme
    if ref.scheme or ref.host or ref.user is not None:
        # The "absoluteURI" or "net_path" cases.
        _set_path(url, _resolve_path(_escaped_path(ref), ""))
        return url
    if ref.opaque:
        url.user = None
        url.host = ""
        url.path = ""
        return url
    if not ref.path and not ref.force_query and not ref.raw_query:
        url.raw_query = base.raw_query
        if not ref.fragment:
            url.fragment = base.fragment
            url.raw_fragment = base.raw_fragment
    if not ref.path and base.opaque:
        url.opaque = base.opaque
        url.user = None
        url.host = ""
        url.path = ""
        return url
    # The "abs_path" or "rel_path" cases.
    url.host = base.host
    url.user = base.user
    _set_path(url, _resolve_path(_escaped_path(base), _escaped_path(ref)))
    return url


def _userinfo_string(user: tuple[str, str | None]) -> str:
    username, password = user
    text = _escape(username, _ENCODE_USER_PASSWORD)
    if password is not None:
        text += ":" + _escape(password, _ENCODE_USER_PASSWORD)
    return text


def _url_string(url: _URL) -> str:
    """Go ``URL.String``."""
    buf: list[str] = []
    if url.scheme:
        buf.append(url.scheme)
        buf.append(":")
    if url.opaque:
        buf.append(url.opaque)
    else:
        has_authority = bool(url.scheme or url.host) or url.user is not None
        # OmitHost (set by Parse for "scheme:/path") drops the empty authority.
        if has_authority and not (url.omit_host and not url.host and url.user is None):
            if url.host or url.path or url.user is not None:
                buf.append("//")
            if url.user is not None:
                buf.append(_userinfo_string(url.user))
                buf.append("@")
            if url.host:
                buf.append(_escape(url.host, _ENCODE_HOST))
        path = _escaped_path(url)
        if path and path[0] != "/" and url.host:
            buf.append("/")
        if not buf and ":" in path.partition("/")[0]:
            # RFC 3986 §4.2: a first segment with a colon would read as a scheme.
            buf.append("./")
        buf.append(path)
    if url.force_query or url.raw_query:
        buf.append("?")
        buf.append(url.raw_query)
    if url.fragment:
        buf.append("#")
        buf.append(_escaped_fragment(url))
    return "".join(buf)
