"""The blocked-word rule (pure): normalisation, parsing the list, and the 422 that names the rule."""
import pytest

from kit.errors import RuleRefused
from social_feed.domain import blocked_word_in, check_blocked_words, normalise, parse_blocked_words

WORDS = parse_blocked_words(["# a comment", "", "加微信", "WeiXin", "  刷 单  ", "!!!"])


def test_normalise_folds_width_case_and_drops_what_sits_between_characters():
    assert normalise("ＷｅｉＸｉｎ") == "weixin"  # full-width to half-width, case folded
    assert normalise("加 微\u3000信") == "加微信"  # ideographic space too
    assert normalise("加.微-信!!") == "加微信"
    assert normalise("ｶﾞ") == "ガ"  # half-width katakana to full-width
    assert normalise("") == "" and normalise(None) == ""


def test_the_list_skips_comments_blanks_and_entries_that_normalise_to_nothing():
    assert WORDS == {"加微信": "加微信", "weixin": "WeiXin", "刷单": "刷 单"}


@pytest.mark.parametrize("text", ["快加微信聊", "加 微 信", "加·微·信", "ＷＥＩＸＩＮ: abc", "w.e.i.x.i.n", "来刷单吧"])
def test_disguised_words_are_found(text):
    assert blocked_word_in(text, WORDS) is not None


@pytest.mark.parametrize("text", ["新茶到了", "微信支付", "we are in", ""])
def test_ordinary_text_passes(text):
    assert blocked_word_in(text, WORDS) is None
    check_blocked_words("text", text, WORDS)


def test_a_refusal_names_the_rule_and_the_entry():
    with pytest.raises(RuleRefused) as refused:
        check_blocked_words("text", "加 微 信 便宜", WORDS)
    assert refused.value.fields == {"text": ["blocked_words: contains '加微信'"]}
    assert "blocked-word rule" in refused.value.message


def test_the_shipped_list_loads():
    from kit.config import DEFAULT_BLOCKED_WORDS
    words = parse_blocked_words(DEFAULT_BLOCKED_WORDS.read_text(encoding="utf-8").splitlines())
    assert "加微信" in words and all(not k.startswith("#") for k in words)
