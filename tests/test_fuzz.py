"""Property-based fuzzing of the parsers users hand bytes to: the model server's request decoding, the
CSV/TSV/JSON readers and the manifest reader. Whatever the bytes, each either parses or refuses them
as the user's mistake (InvalidInput, UserError): never another exception, which a user would see as
a traceback or a 500. Bounded: a fixed number of derandomized examples, no deadline (CI's 2 cores).
Findings become regression cases in the `@example`s."""

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from kserve.errors import InvalidInput

from components.lib.data.readers import open_source, read_source
from components.lib.errors import UserError
from components.lib.serving.protocol import RequestLimits, check_shape, checked_texts, v1_texts
from components.lib.storage.artifacts import MANIFEST, read_manifest

FUZZ = settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
LIMITS = RequestLimits(max_instances=8, max_text_chars=50)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5),
    max_leaves=20,
)


@FUZZ
@given(st.binary(max_size=300))
@example(b'{"instances": ["a", "\\ud800"]}')
@example(b'{"instances": "text"}')
@example(b"\xff\xfe{")
def test_any_v1_body_is_texts_or_a_one_line_refusal(body):
    try:
        texts = v1_texts(body, LIMITS)
    except InvalidInput as refusal:
        assert "\n" not in str(refusal)
        return
    assert 0 < len(texts) <= LIMITS.max_instances and all(isinstance(text, str) and text.strip() for text in texts)


@FUZZ
@given(JSON_VALUES)
def test_any_json_for_the_texts_is_texts_or_a_refusal(value):
    try:
        texts = checked_texts(value, "instances", LIMITS)
    except InvalidInput:
        return
    assert isinstance(texts, list) and all(len(text) <= LIMITS.max_text_chars for text in texts)


@FUZZ
@given(st.lists(st.integers(min_value=-(2**63), max_value=2**63), max_size=4), st.integers(min_value=1, max_value=8))
def test_a_shape_fits_its_texts_or_is_refused(shape, count):
    try:
        check_shape(shape, count)
    except InvalidInput:
        assert shape not in ([count], [count, 1])
        return
    assert shape in ([count], [count, 1])


def read_all(folder: Path) -> list:
    with open_source(str(folder)) as source:
        return list(read_source(source, "text", "label", "", "utf-8"))


@pytest.mark.parametrize("name", ["rows.csv", "rows.tsv", "rows.jsonl", "rows.json"])
@FUZZ
@given(body=st.binary(max_size=400) | st.text(max_size=200).map(str.encode))
@example(body=b'text,label\n"unclosed,positive\n')
@example(body=b'[{"text": 1, "label": [2]}]')
@example(body=b"\xef\xbb\xbftext\tlabel\n\x00\x00")
def test_any_file_is_rows_rejects_or_one_user_error(name, body, tmp_path_factory):
    folder = tmp_path_factory.mktemp("source")
    (folder / name).write_bytes(body)
    try:
        read_all(folder)
    except UserError as refusal:
        assert "\n" not in str(refusal)


@FUZZ
@given(body=st.binary(max_size=300) | JSON_VALUES.map(lambda value: json.dumps(value).encode()))
@example(body=b'{"files": {"../x": {"size": 1, "sha256": "0"}}}')
@example(body=b'{"files": {"a": {"size": true, "sha256": "0"}}}')
@example(body=b'{"files": []}')
def test_any_manifest_is_read_or_refused_in_one_line(body, tmp_path_factory):
    folder = tmp_path_factory.mktemp("artifact")
    (folder / MANIFEST).write_bytes(body)
    try:
        manifest = read_manifest(str(folder))
    except UserError as refusal:
        assert "\n" not in str(refusal)
        return
    assert isinstance(manifest["files"], dict)
