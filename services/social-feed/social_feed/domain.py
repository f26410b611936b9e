"""Social-feed rules: who sees which moment, like and comment; friend requests; inviters; share codes.
Pure functions, no I/O.

Visibility (docs/rules.md, Moments):
- `private`: the author only. `friends`: the author and the author's friends *now* (unfriending takes effect
  at once, also on old posts). `public`: anyone may open it; timelines still only carry one's own and one's
  friends' moments (a stranger's public moment reaches you through a link or the author's album, not your feed).
- New friends see each other's older moments, as on WeChat: the author's album and detail view follow the
  current friendship, and on `friendship.created` the latest BACKFILL_MOMENTS non-private moments of each are
  copied into the other's timeline. Re-friending after an unfriend is the same case: the old entries were never
  removed (read-time checks hid them) and come back, together with what was posted in between.
- Likes and comments are shown to a viewer only when their author is the viewer or the viewer's friend.
"""
import secrets
import string
import unicodedata

from contracts.api.social_feed import SHARE_CODE_PATTERN, VISIBILITIES
from kit.errors import Conflict, NotFound, RuleRefused
from kit.validation import as_stored, new_id, utcnow

MAX_FRIENDS = 5000
BACKFILL_MOMENTS = 50
MAX_INVITER_CHAIN = 1000  # inviter chains are acyclic by construction; this only stops a walk over bad data

SHARE_CODE_ALPHABET = string.digits + string.ascii_letters  # base62: URL-safe, no punctuation to mistype
SHARE_CODE_LENGTH = 10  # 62^10 ≈ 8.4e17 codes: guessing a live one is hopeless, the link stays short


def now():
    """UTC now truncated to milliseconds: what MongoDB stores, so cursors built from a fresh document and
    from the same document read back are identical."""
    return as_stored(utcnow())


def new_share_code():
    return "".join(secrets.choice(SHARE_CODE_ALPHABET) for _ in range(SHARE_CODE_LENGTH))


def is_share_code(code):
    return isinstance(code, str) and bool(SHARE_CODE_PATTERN.match(code))


# --- friends ---------------------------------------------------------------------------------------------
def pair_key(a, b):
    """One key per unordered pair: both directions of a request or friendship meet on it."""
    return ":".join(sorted((a, b)))


def edge_id(owner, friend):
    """Friendships are stored as two directed edges, so "friends of X" is one index range and
    "is Y X's friend" one _id lookup."""
    return f"{owner}:{friend}"


def check_befriend(requester_id, target_id):
    if requester_id == target_id:
        raise RuleRefused("you cannot befriend yourself", {"user_id": ["is yourself"]})


def check_capacity(friend_count, who="you"):
    if friend_count >= MAX_FRIENDS:
        raise Conflict(f"{who} already have {MAX_FRIENDS} friends, the most allowed")


def request_decision(request, actor_id, action):
    """The new status of a friend request when `actor_id` accepts or declines it (only its recipient may)."""
    if request is None or request["to_id"] != actor_id:
        raise NotFound("friend request not found")
    if request["status"] != "pending":
        raise Conflict(f"this request was already {request['status']}")
    return {"accept": "accepted", "decline": "declined"}[action]


# --- inviters --------------------------------------------------------------------------------------------
def check_inviter(user_id, inviter_id, inviter_chain):
    """`inviter_chain`: the proposed inviter's own inviters, nearest first. Nobody invites themselves, and
    no cycle may form (A invited B, so B cannot become A's inviter, nor anyone B invited, ...)."""
    if inviter_id == user_id:
        raise RuleRefused("nobody can be their own inviter", {"share_code": ["is your own share link"]})
    if user_id in inviter_chain:
        raise RuleRefused("this inviter was invited through you: no invitation cycles",
                          {"share_code": ["would make an invitation cycle"]})


# --- moments ---------------------------------------------------------------------------------------------
def can_open(viewer_id, moment, is_friend):
    """Detail view, likes and comments: who may see this moment at all."""
    if moment is None or moment.get("deleted"):
        return False
    if viewer_id is not None and viewer_id == moment["author_id"]:
        return True
    if moment["visibility"] == "public":
        return True
    return moment["visibility"] == "friends" and is_friend


def in_timeline(viewer_id, moment, is_friend):
    """Read-time check of a timeline entry: own moments, and friends' non-private ones, not deleted."""
    if moment is None or moment.get("deleted"):
        return False
    if moment["author_id"] == viewer_id:
        return True
    return is_friend and moment["visibility"] in ("friends", "public")


def album_visibilities(viewer_id, author_id, is_friend):
    """Which of an author's moments a viewer sees on the author's page."""
    if viewer_id == author_id:
        return list(VISIBILITIES)
    return ["friends", "public"] if is_friend else ["public"]


def fans_out(moment):
    """Private moments stay in the author's own timeline."""
    return moment["visibility"] != "private"


def shown_to(viewer_id, items, friend_ids):
    """The mutual-friends rule: likes/comments whose author is the viewer or one of the viewer's friends."""
    return [i for i in items if i["user_id"] == viewer_id or i["user_id"] in friend_ids]


def check_product_card(author_id, share, product_id):
    """A moment's product card carries the author's own share code for that product (a rule on a well-formed
    code: 422, the way /profile/inviter refuses a code it cannot take)."""
    if share is None or share["sharer_id"] != author_id:
        raise RuleRefused("not your share code", {"share_code": ["is not one of your share links"]})
    if product_id is not None and share["product_id"] != product_id:
        raise RuleRefused("share code is for another product", {"share_code": ["is for another product"]})


# --- moderation: the blocked-word list -----------------------------------------------------------------------
def normalise(text):
    """The form texts and list entries are compared in: NFKC (full-width Ａ and half-width ｶ become A and カ),
    case-folded, and with every character that is not a letter, digit or ideograph removed, so spaces, dots or
    emoji put between the characters of a word do not hide it ("加 微 信", "加.微.信", "ＷｅｉＸｉｎ")."""
    folded = unicodedata.normalize("NFKC", text or "").casefold()
    return "".join(ch for ch in folded if unicodedata.category(ch)[0] in "LN")


def parse_blocked_words(lines):
    """The normalised entries of a blocked-word file: one word or phrase per line, '#' starts a comment line,
    blank lines and entries that normalise to nothing are skipped. Returns {normalised: as written}."""
    words = {}
    for line in lines:
        entry = line.strip()
        if entry and not entry.startswith("#") and normalise(entry):
            words.setdefault(normalise(entry), entry)
    return words


def blocked_word_in(text, words):
    """The list entry (as written) that `text` contains after normalisation, or None."""
    flat = normalise(text)
    for key, entry in words.items():
        if key in flat:
            return entry
    return None


def check_blocked_words(field, text, words):
    """RuleRefused (422) naming the rule and the entry when `text` contains a blocked word."""
    entry = blocked_word_in(text, words)
    if entry is not None:
        raise RuleRefused(f"refused by the blocked-word rule: {field} contains '{entry}'",
                          {field: [f"blocked_words: contains '{entry}'"]})


REPORT_TARGETS = ("moment", "comment")


def new_report(reporter_id, target_type, target_id, reason, at):
    """One report per (target, reporter): its id says so, reporting again reopens it with the new reason."""
    return {"_id": f"{target_type}:{target_id}:{reporter_id}", "target_type": target_type, "target_id": target_id,
            "reporter_id": reporter_id, "reason": reason, "status": "open", "resolved_at": None, "created_at": at}


def report_view(report, content=None):
    view = {"report_id": report["_id"], "target_type": report["target_type"], "target_id": report["target_id"],
            "reporter_id": report["reporter_id"], "reason": report["reason"], "status": report["status"],
            "created_at": iso(report["created_at"]),
            "resolved_at": iso(report.get("resolved_at")), "resolution_reason": report.get("resolution_reason")}
    return view if content is None else {**view, "content": content}


def author_id_of(target):
    """Who wrote a moment (author_id) or a comment (user_id); None for nothing."""
    return target and (target.get("author_id") or target.get("user_id"))


def reported_content(target, profile=None):
    """What the admin reviewing a report reads: the reported moment or comment as its author wrote it (whatever
    its visibility), its author, and whether it is already gone. None when nothing is left (its author erased)."""
    if target is None:
        return None
    return {"author": author_view(author_id_of(target), profile), "text": target["text"],
            "images": target.get("images", []), "moment_id": target.get("moment_id", target["_id"]), "created_at": iso(target["created_at"]),
            "taken_down": bool(target.get("taken_down")), "deleted": bool(target.get("deleted"))}



# --- views -----------------------------------------------------------------------------------------------
def iso(t):
    return t.isoformat() if t else None


def author_view(user_id, profile):
    profile = profile or {}
    return {"user_id": user_id, "nickname": profile.get("nickname"), "avatar_url": profile.get("avatar_url")}


def new_moment(author_id, data, product_id, share_code):
    """A moment from a checked MomentInput; product_id and share_code are its product card's (or None)."""
    return {"_id": new_id("mom"), "author_id": author_id, "text": data["text"], "images": data["images"],
            "product_id": product_id, "share_code": share_code, "visibility": data["visibility"],
            "deleted": False, "created_at": now()}


def moment_view(moment, author_profile=None):
    card = None
    if moment.get("product_id") and not moment.get("product_hidden"):  # taken down / merchant suspended
        card = {"product_id": moment["product_id"], "share_code": moment.get("share_code")}
    return {"moment_id": moment["_id"], "author": author_view(moment["author_id"], author_profile),
            "text": moment["text"], "images": moment["images"], "product": card,
            "visibility": moment["visibility"], "created_at": iso(moment["created_at"])}


def profile_view(profile, own=False):
    view = author_view(profile["_id"], profile)
    view["created_at"] = iso(profile["created_at"])
    if own:
        view.update(inviter_id=profile.get("inviter_id"), friend_count=profile.get("friend_count", 0))
    return view


def privacy_view(profile):
    return {"show_purchases_to_friends": bool(profile.get("show_purchases_to_friends", False))}


def request_view(request):
    return {"request_id": request["_id"], "from_user_id": request["from_id"], "to_user_id": request["to_id"],
            "status": request["status"], "created_at": iso(request["created_at"])}


def share_view(share):
    return {"share_code": share["_id"], "sharer_id": share["sharer_id"], "product_id": share["product_id"],
            "channel": share["channel"], "created_at": iso(share["created_at"])}
