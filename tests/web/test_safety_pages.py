"""Safety and privacy in a real browser (issue 15): a password change ends the other sessions, a friend reports a
moment and the admin takes it down from the report queue (audited), a user takes their data away and erases the
account. Accounts, friendships and posts are set up through the API; what each scenario is about is clicked.
Screenshots go under the stack's folder (375 and 1280 px); with QUANZI_SHOTS_DIR set, the 375 px ones are copied
there too as p15-<name>.png for people to look at."""
import json
import os
import shutil
import uuid
from pathlib import Path

from tests.flows import expect
from tests.helpers import eventually
from tests.social.social_flows import befriend, post, timeline_ids
from tests.web.test_storefront import shop


def toast_gone(page):
    """Wait for a confirmation toast to go, as a person waits before tapping what it covers."""
    page.wait(lambda: not page.driver.execute_script(
        "return [...document.querySelectorAll('.van-toast')].some((t) => getComputedStyle(t).display !== 'none')"), 5)
    return page


def shot(page, name):
    """Screenshots of what the page shows once its toast (a confirmation) has gone."""
    toast_gone(page).screenshot(name)
    wanted = os.environ.get("QUANZI_SHOTS_DIR")
    if wanted:
        Path(wanted).mkdir(parents=True, exist_ok=True)
        shutil.copy(page.shots / f"{page.test_name}-{name}-375.png", Path(wanted) / f"p15-{name}.png")


def test_a_password_change_in_the_browser_ends_the_other_session_and_the_new_password_works(page, api):
    page.allowed_console.append(r"status of 401")  # the wrong current password, refused, is part of the scenario
    user = api.register_user(nickname="改密码的人")
    other_session = api.login(user["phone"], user["password"])  # the same account signed in on another phone
    page.sign_in_as(user)
    page.open("/#/me").sees("账号与数据", "导出我的数据", "注销账号")
    page.driver.execute_script("document.querySelector('[data-test=delete-account]').scrollIntoView()")
    shot(page, "me")
    page.click("[data-test=change-password]").sees("修改密码", "其他手机和电脑上的登录会立即退出")
    # a wrong current password is refused next to its field, and nothing changes (this phone stays signed in)
    page.type("[data-test=old-password]", "not-my-password").type("[data-test=new-password]", "New-pass-123")
    page.type("[data-test=repeat-password]", "New-pass-123").click("[data-test=save-password]")
    page.wait(lambda: page.field_error("[data-test=old-password]"))
    assert page.field_error("[data-test=old-password]") == "does not match your current password"
    shot(page, "password-wrong")
    assert api.get("/me", token=other_session).status_code == 200
    # two different new passwords are caught before asking
    page.type("[data-test=old-password]", user["password"]).type("[data-test=repeat-password]", "New-pass-124")
    page.click("[data-test=save-password]")
    page.wait(lambda: page.field_error("[data-test=repeat-password]") == "两次输入的新密码不一致")
    # when the right one is given
    page.type("[data-test=repeat-password]", "New-pass-123").click("[data-test=save-password]")
    page.sees("密码已修改", "其他设备上的登录已全部失效")
    shot(page, "password-changed")
    # then the other session is refused, this phone is still signed in, and only the new password logs in
    assert api.get("/me", token=other_session).status_code == 401
    page.open("/#/me").sees(user["nickname"], user["phone"])
    assert api.post("/auth/login", json={"phone": user["phone"], "password": user["password"]}).status_code == 401
    assert expect(api.get("/me", token=api.login(user["phone"], "New-pass-123")), 200)["user_id"] == user["user_id"]


def test_a_friend_reports_a_moment_and_the_admin_takes_it_down_from_the_queue_with_an_audited_reason(page, api):
    page.allowed_console.append(r"status of 422")  # the blocked word, refused, is part of the scenario
    author, friend = api.register_user(nickname="发广告的人"), api.register_user(nickname="热心好友")
    befriend(api, author, friend)
    text = f"低价代购，私聊 {uuid.uuid4().hex[:6]}"
    moment_id = post(api, author, text, images=["/media/demo-puer.svg"])
    eventually(lambda: timeline_ids(api, friend).index(moment_id))  # fanned out to the friend
    # the friend sees it in moments; a comment with a blocked word is refused next to the comment field
    page.sign_in_as(friend)
    page.open("/#/moments").sees(text)
    card = f"[data-moment='{moment_id}']"
    page.click(f"{card} [data-test=open-comments]")
    page.type(f"{card} [data-test=comment-text]", "加微信 便宜卖").click(f"{card} [data-test=send-comment]")
    page.wait(lambda: page.field_error(f"{card} [data-test=comment-text]"))
    assert page.field_error(f"{card} [data-test=comment-text]").startswith("blocked_words: ")
    shot(page, "comment-blocked-word")
    # the friend reports the moment with a reason
    page.click(f"{card} [data-test=report]").sees("举报动态", "广告或营销")
    choose_reason(page, "广告或营销").type("[data-test=report-details]", "朋友圈里卖假货")
    shot(page, "report-sheet")
    page.click("[data-test=send-report]").sees("已举报")
    # the admin finds it in the report queue with what was written, who wrote it and why it was reported
    page.sign_out()
    page.sign_in_as({"token": api.admin_token()})
    page.open("/admin/").click(text="举报处理").sees("举报处理", text, "广告或营销：朋友圈里卖假货", "发广告的人")
    queued = f"[data-target='{moment_id}']"
    assert page.element(f"{queued} [data-test=author-id]").text == author["user_id"]
    assert page.element(f"{queued} [data-test=reported-image]").get_attribute("src").endswith("/media/demo-puer.svg")
    shot(page, "report-queue")
    # the author's account is one tap away (to suspend them there); back to the queue
    page.click(f"{queued} [data-test=view-author]").sees("用户管理", author["nickname"], "正常")
    assert page.element("[data-test=lookup-id] input").get_attribute("value") == author["user_id"]
    page.driver.back()
    page.sees("举报处理", text)
    # a takedown needs a reason; with one, the moment goes and leaves the queue
    page.click(f"{queued} [data-test=take-down]")
    page.wait(lambda: page.field_error(f"{queued} [data-test=decision-reason]"))
    page.type(f"{queued} [data-test=decision-reason]", "售卖假货广告").click(f"{queued} [data-test=take-down]")
    page.wait(lambda: text not in page.text())
    page.click(text="已删除").sees(text, "已删除")
    # the decision is in the audit log, newest first, found by its target
    page.click(text="审计日志").sees("审计日志", "不能修改或删除")
    page.type("[data-test=audit-target]", moment_id).click("[data-test=audit-filter]")
    page.sees("删除动态", "理由：售卖假货广告", moment_id)
    entries = page.driver.find_elements("css selector", "[data-test=audit-entry]")
    assert len(entries) == 1 and "moment.takedown" in entries[0].text
    shot(page, "audit-log")
    # the moment is gone from the friend's timeline (and its page answers 404)
    page.sign_out()
    page.sign_in_as(friend)
    page.open("/#/moments").sees("朋友圈")
    page.wait(lambda: "没有更多了" in page.text() or "朋友圈还没有动态" in page.text())
    page.does_not_see(text)
    assert api.get(f"/moments/{moment_id}", token=friend["token"]).status_code == 404


def test_a_user_exports_their_data_then_erases_the_account_and_cannot_sign_in_again(page, api, stack):
    page.allowed_console.append(r"status of 401")  # signing in after the erasure, refused, is the point
    user = api.register_user(nickname=f"要走的人{uuid.uuid4().hex[:4]}")
    post(api, user, "最后一条动态")
    downloads = Path(stack.home) / "downloads" / uuid.uuid4().hex
    downloads.mkdir(parents=True)
    page.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    page.sign_in_as(user)
    # the user asks for their data: a summary of what is held, and the JSON file
    page.open("/#/me").click("[data-test=export-data]").sees("导出我的数据")
    page.click("[data-test=export]").sees("导出内容", user["phone"], user["nickname"], "社交 · 朋友圈动态", "1 条")
    shot(page, "export")
    page.click("[data-test=download]")
    files = page.wait(lambda: [f for f in downloads.glob("*.json")], 10, "the export file was not saved")
    assert files[0].name.startswith(f"quanzi-data-{user['user_id']}-")
    exported = json.loads(files[0].read_text())
    assert exported["account"]["phone"] == user["phone"] and exported["account"]["nickname"] == user["nickname"]
    social = next(s for s in exported["services"] if s["service"] == "social_feed")["collections"]
    assert [p["nickname"] for p in social["profiles"]] == [user["nickname"]]
    assert [m["text"] for m in social["moments"]] == ["最后一条动态"]
    # the user reads what deleting erases and what is kept de-identified, confirms with the password
    page.open("/#/me").click("[data-test=delete-account]").sees("注销后将被删除，且无法恢复", "依法保留，但去除身份信息",
                                                                 "删除收货地址")
    assert not page.element("[data-test=confirm-delete]").is_enabled()  # nothing before the password and the tick
    page.type("[data-test=delete-password]", "not-my-password").click("[data-test=understood]")
    page.click("[data-test=confirm-delete]").click(text="永久注销")
    page.wait(lambda: page.field_error("[data-test=delete-password]") == "does not match your current password")
    assert expect(api.get("/me", token=user["token"]), 200)["user_id"] == user["user_id"]  # nothing was erased
    page.type("[data-test=delete-password]", user["password"])
    shot(page, "delete-confirm")
    page.click("[data-test=confirm-delete]").sees("确认注销账号？")
    shot(page, "delete-dialog")
    page.click(text="永久注销").sees("账号已注销", "你已退出登录")
    shot(page, "deleted")
    assert page.driver.execute_script("return localStorage.getItem('quanzi.token')") is None
    assert api.get("/me", token=user["token"]).status_code == 401
    # signing in again with the same phone and password fails
    page.open("/#/login").type("[data-test=phone]", user["phone"]).type("[data-test=password]", user["password"])
    page.click("[data-test=submit]").sees("wrong phone number or password")
    assert "/login" in page.driver.current_url
    assert api.post("/auth/login", json={"phone": user["phone"], "password": user["password"]}).status_code == 401


def test_a_phone_locked_after_guessed_passwords_says_in_the_browser_how_long_to_wait(page, api):
    page.allowed_console.append(r"status of 429")  # the refusal is the point
    user = api.register_user()
    for _ in range(5):  # LOGIN_MAX_FAILURES (5) guesses, from another client
        assert api.post("/auth/login", json={"phone": user["phone"], "password": "guess-123"}).status_code == 401
    page.open("/#/login").type("[data-test=phone]", user["phone"]).type("[data-test=password]", user["password"])
    page.click("[data-test=submit]")
    message = page.element("[data-test=form-error]").text
    assert message.startswith("尝试次数过多，请") and message.endswith("秒后再试"), message
    assert "/login" in page.driver.current_url
    shot(page, "login-throttled")


def choose_reason(page, reason):
    """Tick a report reason in the sheet (it slides up: tap again until the tick shows, as a person would)."""
    radio = f"[data-reason='{reason}']"

    def ticked():
        if page.element(radio).get_attribute("aria-checked") != "true":
            page.click(radio)
        return page.element(radio).get_attribute("aria-checked") == "true"
    page.wait(ticked, 5, f"could not tick {reason}")
    return page


def lookup_state(page):
    """The state tag of what the admin looked up (re-read: the page redraws it after a decision)."""
    try:
        return page.driver.find_element("css selector", "[data-test=lookup-state]").text
    except Exception:
        return None


def test_an_admin_suspends_and_restores_a_user_and_takes_a_product_down_by_lookup(page, api):
    user = api.register_user(nickname=f"被封的人{uuid.uuid4().hex[:4]}")
    title = f"可疑保健品 {uuid.uuid4().hex[:6]}"
    _, _, product = shop(api, title=title)
    # a user who is no admin opening the console is told so, and shown nothing of it
    page.sign_in_as(user)
    page.open("/admin/#/admin/users").sees("只有管理员可以使用管理后台")
    assert not page.driver.find_elements("css selector", "[data-test=lookup-id]")
    page.sign_out()
    admin = api.admin_token()
    admin_id = expect(api.get("/me", token=admin), 200)["user_id"]
    page.sign_in_as({"token": admin})
    # the admin looks the user up by id and suspends them with a reason
    page.open("/admin/").click(text="用户管理").sees("用户管理", "封禁后，这个用户不能登录")
    page.type("[data-test=lookup-id]", user["user_id"]).click("[data-test=lookup]").sees(user["nickname"], "正常")
    page.click("[data-test=block]").sees("请填写理由")
    page.type("[data-test=action-reason]", "批量发广告").click("[data-test=block]")
    page.wait(lambda: lookup_state(page) == "已封禁")
    page.sees("封禁用户：批量发广告")
    shot(page, "admin-user-suspended")
    assert api.get("/me", token=user["token"]).status_code == 401
    assert api.post("/auth/login", json={"phone": user["phone"], "password": user["password"]}).status_code == 403
    # and lifts it: they may sign in again
    page.click("[data-test=unblock]")
    page.wait(lambda: lookup_state(page) == "正常")
    api.login(user["phone"], user["password"])
    # a product found by searching is taken down with a reason: shoppers no longer find it
    page.click(text="商品管理").sees("商品管理")
    page.type("[data-test=product-search]", title.split()[1]).click("[data-test=search]")
    page.click(f"[data-product='{product['product_id']}']").sees(title, "未下架", "顾客可见")
    page.type("[data-test=action-reason]", "虚假宣传").click("[data-test=block]")
    page.wait(lambda: lookup_state(page) == "已下架")
    page.sees("顾客不可见", "下架商品：虚假宣传")
    shot(page, "admin-product-taken-down")
    assert api.get(f"/products/{product['product_id']}").status_code == 404
    assert expect(api.get("/products", params={"q": title.split()[1]}), 200)["items"] == []
    page.click("[data-test=unblock]")
    page.wait(lambda: lookup_state(page) == "未下架")
    assert expect(api.get(f"/products/{product['product_id']}"), 200)["title"] == title
    # every one of those decisions is in the audit log under the admin's id
    page.open(f"/admin/#/admin/audit?actor_id={admin_id}").sees("恢复商品", "下架商品", "解封用户", "封禁用户")
    shot(page, "admin-audit-by-actor")


def test_a_reported_comment_taken_down_by_the_admin_leaves_the_moment_in_place(page, api):
    author, friend, troll = (api.register_user(nickname=n) for n in ("茶友阿花", "茶友小李", f"捣乱的人{uuid.uuid4().hex[:4]}"))
    befriend(api, author, friend)
    befriend(api, author, troll)
    befriend(api, friend, troll)  # comments show among friends (WeChat's rule)
    moment_id = post(api, author, f"周末一起喝茶 {uuid.uuid4().hex[:4]}")
    rude = f"你们都是傻瓜 {uuid.uuid4().hex[:4]}"
    comment_id = expect(api.post(f"/moments/{moment_id}/comments", json={"text": rude}, token=troll["token"]),
                        201)["comment_id"]
    eventually(lambda: timeline_ids(api, friend).index(moment_id))
    # the friend reports the troll's comment under the moment
    page.sign_in_as(friend)
    page.open("/#/moments")
    card = f"[data-moment='{moment_id}']"
    page.click(f"{card} [data-test=open-comments]").sees(rude)
    page.click(f"[data-comment='{comment_id}'] [data-test=report-comment]").sees("举报评论", rude)
    choose_reason(page, "骚扰或辱骂").click("[data-test=send-report]").sees("已举报")
    expect(api.post(f"/moments/{moment_id}/reports", json={"reason": "虚假信息"}, token=troll["token"]), 201)
    # the admin reads it in the queue as a comment, by its author, and takes it down
    page.sign_out()
    page.sign_in_as({"token": api.admin_token()})
    page.open("/admin/#/admin/reports").sees(f"评论 · {troll['nickname']}", rude, "骚扰或辱骂", "周末一起喝茶")
    queued = f"[data-target='{comment_id}']"
    page.type(f"{queued} [data-test=decision-reason]", "辱骂他人").click(f"{queued} [data-test=take-down]")
    page.wait(lambda: rude not in page.text())
    # and keeps the moment the troll reported in retaliation up: the report is dismissed with the reason
    kept = f"[data-target='{moment_id}']"
    toast_gone(page).type(f"{kept} [data-test=decision-reason]", "内容正常").click(f"{kept} [data-test=dismiss]")
    page.wait(lambda: not page.driver.find_elements("css selector", kept))
    page.click(text="已驳回").sees("周末一起喝茶", "驳回理由：内容正常")
    shot(page, "report-dismissed")
    # the friend sees the moment without the comment
    page.sign_out()
    page.sign_in_as(friend)
    page.open("/#/moments").click(f"{card} [data-test=open-comments]")
    page.wait(lambda: page.element(f"{card} [data-test=comment-text]"))
    page.sees("周末一起喝茶")
    page.does_not_see(rude)


def test_the_audit_log_reads_newest_first_and_loads_older_entries_as_the_admin_scrolls(page, api):
    admin, user = api.admin_token(), api.register_user()
    for n in range(1, 12):  # 22 decisions on one user: more than a page (20)
        expect(api.post(f"/admin/users/{user['user_id']}/suspend", json={"reason": f"第{n}次"}, token=admin), 200)
        expect(api.post(f"/admin/users/{user['user_id']}/restore", token=admin), 200)
    page.sign_in_as({"token": admin})
    page.open(f"/admin/#/admin/audit?target_id={user['user_id']}").sees("解封用户", "理由：第11次")

    def shown():
        return page.driver.find_elements("css selector", "[data-test=audit-entry]")
    page.wait(lambda: len(shown()) >= 20)
    first = [e.text.split("\n")[0] for e in shown()[:3]]
    assert first == ["解封用户", "封禁用户", "解封用户"], first  # newest first
    page.driver.execute_script("window.scrollTo(0, document.body.scrollHeight)")
    page.wait(lambda: len(shown()) == 22)
    page.sees("理由：第1次", "没有更多了")
    assert "理由：第1次" in shown()[-1].text  # the oldest comes last
