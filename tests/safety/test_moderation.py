"""Moderation: blocked words refused (422 naming the rule), reports on moments and comments, the admin's report
queue and takedowns (a taken-down moment leaves every timeline and answers 404)."""
from tests.flows import expect
from tests.helpers import eventually
from tests.social.social_flows import befriend, post, timeline_ids


def test_blocked_words_are_refused_in_moments_and_comments_however_they_are_disguised(api):
    author, friend = api.register_user(), api.register_user()
    befriend(api, author, friend)
    for text in ("加微信 便宜卖", "加 微 信", "ＷＥＩ ＸＩＮ", "来 刷-单"):
        refused = api.post("/moments", json={"text": text}, token=author["token"])
        assert refused.status_code == 422, (text, refused.text)
        assert refused.json()["error"]["fields"]["text"][0].startswith("blocked_words: ")
    moment_id = post(api, author, "新茶到了")
    refused = api.post(f"/moments/{moment_id}/comments", json={"text": "私下 交易 吗"}, token=friend["token"])
    assert refused.status_code == 422 and "blocked_words" in refused.json()["error"]["fields"]["text"][0]
    expect(api.post(f"/moments/{moment_id}/comments", json={"text": "好茶"}, token=friend["token"]), 201)
    assert timeline_ids(api, author)[0] == moment_id  # nothing refused was stored


def test_reports_reach_the_admin_and_a_takedown_removes_the_moment_everywhere(api):
    admin = api.admin_token()
    author, friend, other_friend, stranger = (api.register_user() for _ in range(4))
    befriend(api, author, friend)
    befriend(api, author, other_friend)
    moment_id = post(api, author, "奇怪的广告")
    comment_id = expect(api.post(f"/moments/{moment_id}/comments", json={"text": "spam spam"},
                                 token=other_friend["token"]), 201)["comment_id"]
    eventually(lambda: _true(moment_id in timeline_ids(api, other_friend)))
    # a stranger cannot report what they cannot see
    assert api.post(f"/moments/{moment_id}/reports", json={"reason": "spam"},
                    token=stranger["token"]).status_code == 404
    # when a friend reports the moment (twice: one report) and the comment
    report = expect(api.post(f"/moments/{moment_id}/reports", json={"reason": "advert"}, token=friend["token"]), 201)
    assert report["status"] == "open" and report["target_id"] == moment_id
    expect(api.post(f"/moments/{moment_id}/reports", json={"reason": "advert!"}, token=friend["token"]), 201)
    expect(api.post(f"/comments/{comment_id}/reports", json={"reason": "spam"}, token=friend["token"]), 201)
    # then the admin sees them in the open queue
    queue = expect(api.get("/admin/reports", params={"status": "open", "limit": 50}, token=admin), 200)["items"]
    mine = [r for r in queue if r["target_id"] in (moment_id, comment_id)]
    assert sorted((r["target_type"], r["reason"]) for r in mine) == [("comment", "spam"), ("moment", "advert!")]
    # when the admin takes the comment down, then the moment
    expect(api.post(f"/admin/comments/{comment_id}/takedown", json={"reason": "spam"}, token=admin), 200)
    detail = expect(api.get(f"/moments/{moment_id}", token=author["token"]), 200)
    assert comment_id not in [c["comment_id"] for c in detail["comments"]]
    taken = expect(api.post(f"/admin/moments/{moment_id}/takedown", json={"reason": "advertising"}, token=admin), 200)
    assert taken == {"target_type": "moment", "target_id": moment_id, "taken_down": True, "reason": "advertising"}
    # then it is gone for everyone, the author too: timelines, detail, album
    for user in (author, friend, other_friend):
        assert moment_id not in timeline_ids(api, user)
        assert api.get(f"/moments/{moment_id}", token=user["token"]).status_code == 404
    album = expect(api.get(f"/users/{author['user_id']}/moments", token=friend["token"]), 200)["items"]
    assert moment_id not in [m["moment_id"] for m in album]
    assert api.post(f"/admin/moments/{moment_id}/takedown", json={"reason": "again"}, token=admin).status_code == 404
    # its reports are resolved, and the takedowns are audited
    queue = expect(api.get("/admin/reports", params={"status": "open", "limit": 50}, token=admin), 200)["items"]
    assert not [r for r in queue if r["target_id"] in (moment_id, comment_id)]
    actioned = expect(api.get("/admin/reports", params={"status": "actioned", "limit": 50}, token=admin), 200)
    assert {r["target_id"] for r in actioned["items"]} >= {moment_id, comment_id}
    entries = expect(api.get("/admin/audit", params={"target_id": moment_id}, token=admin), 200)["items"]
    assert [(e["action"], e["reason"]) for e in entries] == [("moment.takedown", "advertising")]


def test_an_admin_keeps_a_reported_moment_up_and_the_dismissal_is_audited(api):
    admin = api.admin_token()
    author, friend, other_friend = (api.register_user() for _ in range(3))
    befriend(api, author, friend)
    befriend(api, author, other_friend)
    moment_id = post(api, author, "我家的猫")
    # given two friends who report a harmless moment
    for reporter in (friend, other_friend):
        expect(api.post(f"/moments/{moment_id}/reports", json={"reason": "I don't like cats"},
                        token=reporter["token"]), 201)
    # when the admin looks and keeps it up
    kept = expect(api.post(f"/admin/moments/{moment_id}/reports/dismiss", json={"reason": "no rule broken"},
                           token=admin), 200)
    # then both reports are closed as dismissed with the reason, and the moment stays for everyone
    assert kept == {"target_type": "moment", "target_id": moment_id, "dismissed": 2, "reason": "no rule broken"}
    open_now = expect(api.get("/admin/reports", params={"status": "open", "limit": 50}, token=admin), 200)["items"]
    assert moment_id not in [r["target_id"] for r in open_now]
    dismissed = expect(api.get("/admin/reports", params={"status": "dismissed", "limit": 50}, token=admin), 200)
    mine = [r for r in dismissed["items"] if r["target_id"] == moment_id]
    assert [(r["status"], r["resolution_reason"]) for r in mine] == [("dismissed", "no rule broken")] * 2
    assert all(moment_id in timeline_ids(api, user) for user in (author, friend, other_friend))
    entries = expect(api.get("/admin/audit", params={"target_id": moment_id}, token=admin), 200)["items"]
    assert [(e["action"], e["reason"]) for e in entries] == [("moment.reports_dismissed", "no rule broken")]
    # nothing open any more: a second dismissal is 404; a new report opens it again, without the old reason
    assert api.post(f"/admin/moments/{moment_id}/reports/dismiss", json={"reason": "again"},
                    token=admin).status_code == 404
    again = expect(api.post(f"/moments/{moment_id}/reports", json={"reason": "really"}, token=friend["token"]), 201)
    assert (again["status"], again["resolution_reason"]) == ("open", None)


def _true(condition):
    assert condition
