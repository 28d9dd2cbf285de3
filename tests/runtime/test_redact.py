"""summarize(): what events and displays show of a value — short, and never a secret."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.redact import redact, redact_text, summarize

_ALNUM = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_alnum = st.text(alphabet=_ALNUM, min_size=12, max_size=3000)
_filler = st.text(alphabet=" abcdefghij.,:\n", max_size=600)
# Tokens as they appear in text: after a space (the patterns want a word boundary).
_PREFIXES = [" sk-", " Bearer ", " Bearer\n", " ghp_", " xoxb-"]
_token = st.tuples(st.sampled_from(_PREFIXES), _alnum)
_short_token = st.tuples(st.sampled_from(_PREFIXES),
                         st.text(alphabet=_ALNUM, min_size=12, max_size=200))


def _reference(value, limit):
    """summarize() as first written: redact all of it, encode all of it, then cut."""
    text = redact_text(value) if isinstance(value, str) else jsonutil.canonical(redact(value))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _text(parts):
    return "".join(p if isinstance(p, str) else p[0] + p[1] for p in parts)


@settings(max_examples=300)
@given(parts=st.lists(st.one_of(_filler, _short_token), max_size=8),
       limit=st.integers(20, 400), nest=st.booleans())
def test_text_with_tokens_shows_as_if_all_of_it_were_redacted(parts, limit, nest):
    """Only the start of each string is redacted, but a token that starts in what is
    shown is always read whole enough to be masked: the same text as redacting it all."""
    text = _text(parts)
    value = {"reply": [text]} if nest else text
    assert summarize(value, limit) == _reference(value, limit)


@settings(max_examples=300)
@given(parts=st.lists(st.one_of(_filler, _token), max_size=8),
       limit=st.integers(20, 400), nest=st.booleans())
def test_no_token_shows_however_the_text_is_cut(parts, limit, nest):
    """Tokens longer than what is read of a string: masked all the same."""
    secrets = [body for part in parts if isinstance(part, tuple) for _, body in [part]]
    text = _text(parts)
    shown = summarize({"reply": [text]} if nest else text, limit)
    assert len(shown) <= limit
    for secret in secrets:
        for start in range(0, len(secret) - 8):
            assert secret[start:start + 8] not in shown, "part of a token is shown"


_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=700),
              st.floats(allow_nan=False)),
    lambda inner: st.one_of(st.lists(inner, max_size=600),
                            st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=40)


@settings(max_examples=200)
@given(value=_values, limit=st.integers(5, 300))
def test_what_is_shown_is_the_start_of_the_whole_text(value, limit):
    assert summarize(value, limit) == _reference(value, limit)
