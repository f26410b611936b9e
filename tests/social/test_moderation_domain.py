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


def test_the_report_queue_shows_what_was_reported_and_who_wrote_it():
    from datetime import datetime, timezone

    from social_feed.domain import author_id_of, new_report, report_view, reported_content

    at = datetime(2026, 11, 30, 8, 0, tzinfo=timezone.utc)
    moment = {"_id": "mom_1", "author_id": "usr_a", "text": "广告", "images": ["https://x/1.png"], "created_at": at,
              "deleted": False}
    comment = {"_id": "cmt_1", "moment_id": "mom_1", "user_id": "usr_b", "text": "spam", "created_at": at,
               "taken_down": {"reason": "spam", "at": at}}
    assert (author_id_of(moment), author_id_of(comment), author_id_of(None)) == ("usr_a", "usr_b", None)
    assert reported_content(moment, {"nickname": "小A"}) == {
        "author": {"user_id": "usr_a", "nickname": "小A", "avatar_url": None}, "text": "广告",
        "images": ["https://x/1.png"], "moment_id": "mom_1", "created_at": at.isoformat(), "taken_down": False,
        "deleted": False}
    shown = reported_content(comment)
    assert (shown["moment_id"], shown["images"], shown["taken_down"], shown["author"]["nickname"]) == \
        ("mom_1", [], True, None)
    assert reported_content(None) is None  # its author erased: nothing left to show
    report = new_report("usr_c", "moment", "mom_1", "ad", at)
    assert "content" not in report_view(report)  # what the reporter gets back
    assert report_view(report, shown)["content"] is shown
