"""DataReference parsing and construction: docs/flyte-compatibility.md#references (Go net/url semantics)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flytestore.errors import InvalidReferenceError
from flytestore.reference import DataReference, construct_reference, escape_key, split_reference

ADLS = "mystorageaccount.dfs.core.windows.net"

# --------------------------------------------------------------------------------------------------
# NewDataReference (docs/flyte-compatibility.md#references)
# --------------------------------------------------------------------------------------------------


def test_new_formats_without_escaping() -> None:
    assert DataReference.new("s3", "container", "path/to/file") == "s3://container/path/to/file"
    assert DataReference.new("s3", "c", "") == "s3://c/"
    assert DataReference.new("gs", "b", "a b/%zz") == "gs://b/a b/%zz"
    assert isinstance(DataReference.new("s3", "c", "k"), DataReference)


def test_data_reference_is_a_str_and_splits() -> None:
    ref = DataReference("s3://container/path/to/file")
    assert ref == "s3://container/path/to/file"
    assert str(ref) == "s3://container/path/to/file"
    assert ref.split() == ("s3", "container", "path/to/file")


# --------------------------------------------------------------------------------------------------
# Split (docs/flyte-compatibility.md#splitting-references): one case per table row
# --------------------------------------------------------------------------------------------------

SPLIT_CASES = [
    ("s3://container/path/to/file", ("s3", "container", "path/to/file")),
    ("gs://bucket/path/to/object", ("gs", "bucket", "path/to/object")),
    (f"abfs://mycontainer@{ADLS}/path/to/file", ("abfs", "mycontainer", "path/to/file")),
    (f"abfs://mycontainer@{ADLS}", ("abfs", "mycontainer", "")),
    (f"abfss://mycontainer@{ADLS}/path/to/file", ("abfss", "mycontainer", "path/to/file")),
    ("s3://accessKey:secret@bucket/path/to/file", ("s3", "bucket", "path/to/file")),
    ("abfs://@acct.dfs.core.windows.net/p", ("abfs", "acct.dfs.core.windows.net", "p")),
    ("abfs://acct.dfs.core.windows.net/p", ("abfs", "acct.dfs.core.windows.net", "p")),
    ("s3://container", ("s3", "container", "")),
    ("s3://container/", ("s3", "container", "")),
    ("s3://container//a//b/", ("s3", "container", "a//b")),
    ("s3:///key", ("s3", "", "key")),
    ("file:///abs/path", ("file", "", "abs/path")),
    ("hello", ("", "", "hello")),
    ("root/subkey", ("", "", "root/subkey")),
    ("/root/subkey", ("", "", "root/subkey")),
    ("", ("", "", "")),
    ("S3://bucket/key", ("s3", "bucket", "key")),
    ("s3://bucket:9000/key", ("s3", "bucket:9000", "key")),
    ("redis://localhost:6379/meta/x.pb", ("redis", "localhost:6379", "meta/x.pb")),
    ("gs://bucket/p%20q", ("gs", "bucket", "p q")),
    ("gs://bucket/path with space/x", ("gs", "bucket", "path with space/x")),
    ("gs://bucket/a?b=c", ("gs", "bucket", "a")),
    ("gs://bucket/a#frag", ("gs", "bucket", "a")),
    ("s3://bucket/a/../b", ("s3", "bucket", "a/../b")),
]


@pytest.mark.parametrize(("ref", "expected"), SPLIT_CASES, ids=[c[0] or "<empty>" for c in SPLIT_CASES])
def test_split_table(ref: str, expected: tuple[str, str, str]) -> None:
    assert split_reference(ref) == expected
    assert DataReference(ref).split() == expected


SPLIT_ERRORS = [
    ("://container/path", "missing protocol scheme"),
    ("s3://bucket:abc/key", 'invalid port ":abc" after host'),
    ("s3://bucket/%zz", 'invalid URL escape "%zz"'),
    ("*&^#&$@:%//", 'invalid URL escape "%//"'),
]


@pytest.mark.parametrize(("ref", "reason"), SPLIT_ERRORS, ids=[c[0] for c in SPLIT_ERRORS])
def test_split_table_errors(ref: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        split_reference(ref)
    message = str(info.value)
    assert reason in message
    assert f'"{ref}"' in message  # the input is quoted, Go style
    assert isinstance(info.value, ValueError)
    with pytest.raises(InvalidReferenceError):
        DataReference(ref).split()


def test_split_error_message_is_gos() -> None:
    with pytest.raises(InvalidReferenceError, match=r'^parse "://container/path": missing protocol scheme$'):
        split_reference("://container/path")


# Cases the table is silent on; the expected values follow Go's net/url.
SPLIT_EXTRA_CASES = [
    ("abfss://fs@acct/dir/", ("abfss", "fs", "dir")),
    ("abfs://user:pw@acct/x", ("abfs", "user", "x")),
    ("abfs://fs%40x@acct/x", ("abfs", "fs@x", "x")),  # the username is percent-decoded
    ("gs://bucket/%C3%BC/x", ("gs", "bucket", "ü/x")),
    ("gs://bucket/ü/x", ("gs", "bucket", "ü/x")),
    ("gs://b%C3%BCcket/k", ("gs", "bücket", "k")),
    ("s3:bucket/key", ("s3", "", "")),  # opaque: Go puts it in Opaque, not Path
    ("s3://bucket/a?", ("s3", "bucket", "a")),
    ("s3://bucket:/key", ("s3", "bucket:", "key")),  # an empty port is allowed
    ("http://[::1]:8080/x", ("http", "[::1]:8080", "x")),
    ("http://[fe80::1%25en0]/x", ("http", "[fe80::1%en0]", "x")),
    ("s3://b/a#ok%20x", ("s3", "b", "a")),
    ("a#\x01", ("", "", "a")),  # Go does not check the fragment for control characters
    ("*", ("", "", "*")),
    ("s3://b/a%2Fb", ("s3", "b", "a/b")),
    ("s3://b/%2Fa%2F", ("s3", "b", "a")),
    ("///x", ("", "", "x")),  # no scheme and three slashes: no authority
    ("//host/x", ("", "host", "x")),
    ("a/b:c", ("", "", "a/b:c")),
]


@pytest.mark.parametrize(("ref", "expected"), SPLIT_EXTRA_CASES, ids=[repr(c[0]) for c in SPLIT_EXTRA_CASES])
def test_split_follows_go(ref: str, expected: tuple[str, str, str]) -> None:
    assert split_reference(ref) == expected


SPLIT_EXTRA_ERRORS = [
    ("1a:b/c", "first path segment in URL cannot contain colon"),
    (":x", "missing protocol scheme"),
    ("s3://bucket/a\nb", "invalid control character in URL"),
    ("s3://bucket/a\x7f", "invalid control character in URL"),
    ("s3://bu cket/k", 'invalid character " " in host name'),
    ("s3://b%41/k", 'invalid URL escape "%41"'),
    ("s3://b/a%", 'invalid URL escape "%"'),
    ("s3://b/a%4", 'invalid URL escape "%4"'),
    ("s3://b/a#%g0", 'invalid URL escape "%g0"'),
    ("s3://us^er@b/k", "invalid userinfo"),
    ("s3://b:1:2/k", "invalid port"),  # Go 1.26: only one colon outside brackets
    ("http://[::1/x", "missing ']' in host"),
    ("http://[::1]x/y", 'invalid port "x" after host'),
    ("http://[1.2.3.4]/x", "invalid IP-literal"),
    ("http://[example.com]/x", "invalid host"),
    ("s3://b/%ff", "not valid UTF-8"),
    ("s3://b/ok\ud800", "lone surrogate"),
]


@pytest.mark.parametrize(("ref", "reason"), SPLIT_EXTRA_ERRORS, ids=[repr(c[0]) for c in SPLIT_EXTRA_ERRORS])
def test_split_errors_follow_go(ref: str, reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        split_reference(ref)
    assert reason in str(info.value)


@pytest.mark.parametrize("bad", [None, 3, b"s3://b/k", 1.5])
def test_split_rejects_non_str(bad: object) -> None:
    with pytest.raises(InvalidReferenceError, match="must be a str"):
        split_reference(bad)


def test_split_is_lru_cached() -> None:
    info = split_reference.cache_info()
    assert info.maxsize == 65536
    split_reference("s3://cache-probe/x")
    split_reference("s3://cache-probe/x")
    assert split_reference.cache_info().hits >= info.hits + 1


# --------------------------------------------------------------------------------------------------
# ConstructReference (docs/flyte-compatibility.md#constructing-references): one case per table row
# --------------------------------------------------------------------------------------------------

P = "s3://bucket/prefix"

CONSTRUCT_CASES: list[tuple[str, tuple[str, ...], str]] = [
    ("hello", ("key1", "key2/", "key3"), "/hello/key1/key2/key3"),
    ("root", ("subkey", "subkey2"), "/root/subkey/subkey2"),
    (
        "redis://localhost:6379",
        ("metadata", "runs", "r1", "inputs.pb"),
        "redis://localhost:6379/metadata/runs/r1/inputs.pb",
    ),
    ("s3://bucket", ("a", "b"), "s3://bucket/a/b"),
    ("s3://bucket/", ("a", "b"), "s3://bucket/a/b"),
    (P, ("a",), "s3://bucket/prefix/a"),
    (P + "/", ("a",), "s3://bucket/prefix/a"),
    (P + "//", ("a",), "s3://bucket/prefix//a"),
    (P, ("/a/", "//b//"), "s3://bucket/prefix/a/b"),
    (P, (), "s3://bucket/prefix/"),
    (P, ("",), "s3://bucket/prefix/"),
    (P, (".",), "s3://bucket/prefix/"),
    (P, ("a", "", "b"), "s3://bucket/prefix/a//b"),
    (P, ("a", "/", "b"), "s3://bucket/prefix/a//b"),
    (P, ("a//b",), "s3://bucket/prefix/a//b"),
    (P, ("..",), "s3://bucket/"),
    (P, ("../x",), "s3://bucket/x"),
    (P, ("a/./b/../c",), "s3://bucket/prefix/a/c"),
    (P, ("a b",), "s3://bucket/prefix/a%20b"),
    (P, ("a%20b",), "s3://bucket/prefix/a%20b"),
    (P, ("ü",), "s3://bucket/prefix/%C3%BC"),
    (P, ("a+b",), "s3://bucket/prefix/a+b"),
    (P, ("~!@$&'()*,;=",), "s3://bucket/prefix/~!@$&'()*,;="),
    (P, ("a?x=1",), "s3://bucket/prefix/a?x=1"),
    (P, ("a#f",), "s3://bucket/prefix/a#f"),
    (P, ("a:b",), "a:b"),
    (P, ("http://other/x",), "http://other/x"),
    (P, ("a", "b:c"), "s3://bucket/prefix/a/b:c"),
    ("s3://bucket/pre fix", ("a",), "s3://bucket/pre%20fix/a"),
    ("s3://bucket/prefix?q=1", ("a",), "s3://bucket/a"),
    ("", ("a",), "/a"),
    ("/", ("a",), "/a"),
    ("abfs://c@acct.dfs.core.windows.net/p", ("x",), "abfs://c@acct.dfs.core.windows.net/p/x"),
    ("file:///srv/base", ("x",), "file:///srv/base/x"),
]


@pytest.mark.parametrize(
    ("base", "keys", "expected"),
    CONSTRUCT_CASES,
    ids=[f"{b or '<empty>'}|{'|'.join(k)}" for b, k, _ in CONSTRUCT_CASES],
)
def test_construct_table(base: str, keys: tuple[str, ...], expected: str) -> None:
    result = construct_reference(base, *keys)
    assert result == expected
    assert type(result) is DataReference


CONSTRUCT_ERRORS = [
    ("*&^#&$@:%//", ("key1", "key2/", "key3"), 'invalid URL escape "%//"'),
    ("*&^#&$@://", ("key1%", "key2/", "key3"), 'invalid URL escape "%/k"'),
]


@pytest.mark.parametrize(("base", "keys", "reason"), CONSTRUCT_ERRORS, ids=["base-parse", "key-parse"])
def test_construct_table_errors(base: str, keys: tuple[str, ...], reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        construct_reference(base, *keys)
    message = str(info.value)
    # The message names the base, even when a key is what failed to parse.
    assert message.startswith(f"Reference is of an invalid format [{base}]: parse ")
    assert reason in message


def test_construct_error_messages_are_gos() -> None:
    with pytest.raises(InvalidReferenceError) as info:
        construct_reference("*&^#&$@://", "key1%")
    assert str(info.value) == 'Reference is of an invalid format [*&^#&$@://]: parse "key1%": invalid URL escape "%"'
    with pytest.raises(InvalidReferenceError) as info:
        construct_reference("://x", "a")
    assert str(info.value) == 'Reference is of an invalid format [://x]: parse "://x/": missing protocol scheme'


# Cases the table is silent on; the expected values follow Go's URL.ResolveReference and URL.String.
CONSTRUCT_EXTRA_CASES: list[tuple[str, tuple[str, ...], str]] = [
    (P, ("a%2Fb",), "s3://bucket/prefix/a%2Fb"),  # RawPath keeps the escaped slash
    (P, ("%7e",), "s3://bucket/prefix/%7e"),  # a valid RawPath is kept as written
    (P, ("%41",), "s3://bucket/prefix/%41"),
    (P, ("a b%41",), "s3://bucket/prefix/a%20bA"),  # ... an invalid one is re-escaped from Path
    (P, ("[x]",), "s3://bucket/prefix/[x]"),
    (P, ("a%5Bx",), "s3://bucket/prefix/a%5Bx"),
    (P, ("日本",), "s3://bucket/prefix/%E6%97%A5%E6%9C%AC"),
    (P, ('a"b',), "s3://bucket/prefix/a%22b"),
    (P, ("a", "?q"), "s3://bucket/prefix/a/?q"),
    (P, ("a?",), "s3://bucket/prefix/a?"),
    (P, ("a#f g",), "s3://bucket/prefix/a#f%20g"),
    (P, ("a#f!",), "s3://bucket/prefix/a#f!"),
    (P, ("../../..",), "s3://bucket/"),
    (P, ("a/..",), "s3://bucket/prefix/"),
    (P, ("", "a"), "s3://bucket/a"),  # the joined key is "/a": an absolute path
    (P, ("", "", "other", "x"), "s3://other/x"),  # "//other/x": a network-path reference
    ("s3://bucket/p#frag", (), "s3://bucket/p#frag/"),  # the '/' is appended to the fragment
    ("s3://bucket/p?q", ("",), "s3://bucket/p?q/"),
    ("s3://user:p%40ss@bucket/p", ("x",), "s3://user:p%40ss@bucket/p/x"),
    ("s3://b%C3%BCcket/p", ("x",), "s3://b%C3%BCcket/p/x"),
    ("s3://bücket/p", ("x",), "s3://b%C3%BCcket/p/x"),
    ("http://[fe80::1%25en0]:8/p", ("x",), "http://[fe80::1%25en0]:8/p/x"),
    ("s3:opaque", ("x",), "s3:///x"),
    ("s3:/rooted", ("x",), "s3:///rooted/x"),
    ("s3:///k", ("x",), "s3:///k/x"),
    ("mem://", ("x",), "mem:///x"),
    ("S3://Bucket/p", ("x",), "s3://Bucket/p/x"),
    ("rel/dir", ("a:b",), "a:b"),
    (P, ("mailto:x@y",), "mailto:x@y"),
    (P, ("a:/x",), "a:/x"),
    (P, ("*",), "s3://bucket/prefix/*"),
    (P, ("a*",), "s3://bucket/prefix/a*"),
]


@pytest.mark.parametrize(
    ("base", "keys", "expected"),
    CONSTRUCT_EXTRA_CASES,
    ids=[f"{b}|{'|'.join(k)}" for b, k, _ in CONSTRUCT_EXTRA_CASES],
)
def test_construct_follows_go(base: str, keys: tuple[str, ...], expected: str) -> None:
    assert construct_reference(base, *keys) == expected


CONSTRUCT_EXTRA_ERRORS = [
    ("s3://bucket:x", ("a",), "invalid port"),
    ("s3://b/%zz", ("a",), 'invalid URL escape "%zz"'),
    (P, ("1a:b",), "first path segment in URL cannot contain colon"),
    (P, ("a\tb",), "invalid control character in URL"),
    (P, ("a%zz",), 'invalid URL escape "%zz"'),
    (P, ("ok\udcff",), "lone surrogate"),
    ("s3://b\ud800/p", ("a",), "lone surrogate"),
]


@pytest.mark.parametrize(
    ("base", "keys", "reason"), CONSTRUCT_EXTRA_ERRORS, ids=[repr(c) for c in CONSTRUCT_EXTRA_ERRORS]
)
def test_construct_errors_follow_go(base: str, keys: tuple[str, ...], reason: str) -> None:
    with pytest.raises(InvalidReferenceError) as info:
        construct_reference(base, *keys)
    assert str(info.value).startswith(f"Reference is of an invalid format [{base}]: ")
    assert reason in str(info.value)


@pytest.mark.parametrize(("base", "keys"), [(None, ("a",)), (b"s3://b", ()), ("s3://b", ("a", 1)), ("s3://b", (None,))])
def test_construct_rejects_non_str(base: object, keys: tuple[object, ...]) -> None:
    with pytest.raises(InvalidReferenceError, match="must be a str"):
        construct_reference(base, *keys)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "key",
    ["unicode/ü-日本語.txt", "with space/a b c", "percent/100%/x%20y", "sym/a+b=c,d;e@f:g", "q/what?is#this", "~!'()*"],
)
def test_escape_key_round_trips_through_split(key: str) -> None:
    escaped = escape_key(key)
    assert escaped.isascii()
    assert split_reference(f"s3://bucket/{escaped}") == ("s3", "bucket", key)
    assert split_reference(f"/{escaped}") == ("", "", key)


# --------------------------------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------------------------------

# Text that is dense in URL syntax, to reach the parser's branches more often than st.text() does.
URL_TOKENS = [*":/?#[]@%!$&'()*+,;=-._~ aZ09üf\x00\x7f", "%2", "%25", "%zz", "%C3", "://", "s3://", "abfs://", "::1"]
URLISH = st.lists(st.sampled_from(URL_TOKENS), max_size=20).map("".join)
ANY_TEXT = st.one_of(st.text(), URLISH)


@given(ANY_TEXT)
def test_split_raises_only_invalid_reference(ref: str) -> None:
    try:
        scheme, container, key = split_reference(ref)
    except InvalidReferenceError:
        return
    assert scheme == scheme.lower()
    assert not key.startswith("/") and not key.endswith("/")
    assert isinstance(container, str)


@given(ANY_TEXT, st.lists(ANY_TEXT, max_size=4))
def test_construct_raises_only_invalid_reference(base: str, keys: list[str]) -> None:
    try:
        result = construct_reference(base, *keys)
    except InvalidReferenceError:
        return
    assert type(result) is DataReference


SAFE_KEY = st.text(
    alphabet=st.one_of(
        st.characters(categories=("L", "N")),
        st.sampled_from(list("-_.~ +=@!$&'()*,;")),
    ),
    min_size=1,
    max_size=12,
).filter(lambda k: k not in (".", ".."))


@given(st.lists(SAFE_KEY, min_size=1, max_size=5))
def test_construct_then_split_round_trips(keys: list[str]) -> None:
    ref = construct_reference("s3://bucket", *keys)
    assert ref.split() == ("s3", "bucket", "/".join(k.strip("/") for k in keys))


@given(st.lists(SAFE_KEY, min_size=1, max_size=5))
def test_construct_is_stable_under_reconstruction(keys: list[str]) -> None:
    ref = construct_reference("s3://bucket/base", *keys)
    assert construct_reference(ref) == ref + "/"
