from __future__ import annotations

import json
from pathlib import Path

import pytest

from detector.intake.envelope import MalformedEnvelope, parse_envelope

SPEC_FILES = [
    "01_two_items.bin",
    "02_two_items_no_trailing_newline.bin",
    "03_two_empty_attachments.bin",
    "04_two_empty_attachments_no_trailing_newline.bin",
    "05_implicit_length_newline.bin",
    "06_implicit_length_eof.bin",
    "07_empty_headers_session_implicit_eof.bin",
]


@pytest.mark.parametrize("name", SPEC_FILES)
def test_spec_examples_parse_as_expected(fixtures_dir: Path, name: str) -> None:
    spec = fixtures_dir / "envelope-spec"
    expected = json.loads((spec / "expected.json").read_text())["expected_items"][name]
    envelope = parse_envelope((spec / name).read_bytes())
    assert [item.type for item in envelope.items] == [e["type"] for e in expected]
    for item, want in zip(envelope.items, expected, strict=True):
        if "payload_hex" in want:
            assert item.payload == bytes.fromhex(want["payload_hex"])
        else:
            assert item.payload == want["payload"].encode()


def test_spec_headers_are_kept(fixtures_dir: Path) -> None:
    envelope = parse_envelope((fixtures_dir / "envelope-spec" / "01_two_items.bin").read_bytes())
    assert envelope.event_id == "9ec79c33ec9942ab8353589fcb2e04dc"
    assert envelope.dsn == "https://e12d836b15bb49d7bbf99e64295d995b:@sentry.io/42"
    assert envelope.items[0].headers["filename"] == "hello.txt"
    assert envelope.items[1].headers["length"] == 41


def test_all_real_client_envelopes_parse(fixtures_dir: Path) -> None:
    files = sorted((fixtures_dir / "real-clients").glob("*.envelope"))
    assert len(files) == 6
    for path in files:
        envelope = parse_envelope(path.read_bytes())
        assert envelope.headers["sdk"]["name"] == "sentry.javascript.browser"
        assert len(envelope.items) == 1
        kind = "event" if "-event" in path.name else "session"
        assert envelope.items[0].type == kind
        assert json.loads(envelope.items[0].payload)["attrs" if kind == "session" else "level"]


def test_header_only_envelope_has_no_items() -> None:
    assert parse_envelope(b'{"event_id":"x"}').items == []
    assert parse_envelope(b'{"event_id":"x"}\n').items == []


def test_explicit_length_payload_may_contain_newlines() -> None:
    body = b'{}\n{"type":"attachment","length":5}\na\nb\nc\n{"type":"event"}\n{}\n'
    envelope = parse_envelope(body)
    assert [i.payload for i in envelope.items] == [b"a\nb\nc", b"{}"]


def test_unknown_item_types_are_kept() -> None:
    envelope = parse_envelope(b'{}\n{"type":"client_report"}\n{"discarded_events":[]}\n{"type":"event"}\n{}')
    assert [i.type for i in envelope.items] == ["client_report", "event"]
    assert [i.type for i in envelope.items_of_type("event")] == ["event"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"", "empty body"),
        (b"{not json}\n", "envelope header is not valid JSON"),
        (b"[1,2]\n", "envelope header must be a JSON object"),
        (b'{"x":"\xff"}\n', "envelope header is not valid UTF-8"),
        (b'{}\n{"length":2}\nab\n', "item 0 header has no string 'type'"),
        (b'{}\n{"type":""}\n', "item 0 header has no string 'type'"),
        (b'{}\n{"type":5}\n', "item 0 header has no string 'type'"),
        (b'{}\n"event"\n{}\n', "item 0 header must be a JSON object"),
        (b'{}\n{"type":"event","length":50}\n{}\n', "length 50 runs past the end"),
        (b'{}\n{"type":"event","length":"2"}\n{}\n', "length must be an integer"),
        (b'{}\n{"type":"event","length":2.5}\n{}\n', "length must be an integer"),
        (b'{}\n{"type":"event","length":true}\n{}\n', "length must be an integer"),
        (b'{}\n{"type":"event","length":-1}\n{}\n', "length is negative"),
        (b'{}\n{"type":"event","length":1}\n{}\n', "is not followed by a newline"),
        (b'{}\n{"type":"event"}\n{}\n{"type":"a\xc3"}\n', "item 1 header is not valid UTF-8"),
    ],
)
def test_malformed_envelopes_name_the_problem(body: bytes, fragment: str) -> None:
    with pytest.raises(MalformedEnvelope, match=fragment):
        parse_envelope(body)


def test_too_many_items() -> None:
    body = b"{}\n" + b'{"type":"attachment","length":0}\n\n' * 4
    assert len(parse_envelope(body, max_items=4).items) == 4
    with pytest.raises(MalformedEnvelope, match="too many items: more than 3"):
        parse_envelope(body, max_items=3)


def test_malformed_envelope_is_a_value_error() -> None:
    assert issubclass(MalformedEnvelope, ValueError)
