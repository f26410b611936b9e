"""Profiles, friends, moments (朋友圈), timelines and share links: thin routes over the social_feed service."""

from contracts.api.social_feed import (CommentInput, FriendRequestInput, InviterBinding, MomentInput, Page,
                                      ProfileUpdate, ShareInput)
from gateway import schemas_social as out
from gateway.cache import ProductCache
from gateway.http import API_PREFIX, api
from gateway.rpc import call
from kit.amqp import RpcProxy


def product_summary(view):
    return {"product_id": view["product_id"], "merchant_id": view["merchant_id"], "title": view["title"],
            "category": view["category"], "image": (view.get("images") or [None])[0],
            "min_price_fen": view["min_price_fen"], "group_buy": view.get("group_buy"), "rating": view["rating"]}


class SocialRoutes:
    social_feed = RpcProxy("social_feed")
    catalog = RpcProxy("catalog")
    products = ProductCache()

    # -- profiles -----------------------------------------------------------------------------------------
    @api("GET", "/profile", response=out.SocialProfile, tags=["profiles"], errors=[404],
         summary="Your social profile: nickname, avatar, inviter, friend count")
    def own_profile(self, c):
        return call(self.social_feed.get_profile, c.user_id, c.user_id)

    @api("PATCH", "/profile", body=ProfileUpdate, response=out.SocialProfile, tags=["profiles"], errors=[404],
         summary="Change your nickname or avatar (https URL)")
    def update_profile(self, c):
        return call(self.social_feed.update_profile, c.user_id, c.body)

    @api("POST", "/profile/inviter", body=InviterBinding, response=out.SocialProfile, tags=["profiles"],
         errors=[404, 409, 422],
         summary="Record who invited you, through their share code, if you registered without one: once "
                 "(409 when set), never yourself nor someone you invited (422)")
    def bind_inviter(self, c):
        return call(self.social_feed.bind_inviter, c.user_id, c.body)

    @api("GET", "/users/<user_id>", response=out.SocialProfile, tags=["profiles"], errors=[404],
         summary="Someone's public profile")
    def user_profile(self, c):
        return call(self.social_feed.get_profile, c.path["user_id"], c.user_id)

    @api("GET", "/users/<user_id>/moments", query=Page, response=out.MomentPage, tags=["moments"], errors=[404],
         summary="Someone's moments you may see (friends see older friends-only moments too), newest first")
    def user_moments(self, c):
        return call(self.social_feed.user_moments, c.user_id, c.path["user_id"], c.query)

    # -- friends ------------------------------------------------------------------------------------------
    @api("POST", "/friends/requests", body=FriendRequestInput, response=out.FriendRequest, status=201,
         tags=["friends"], errors=[404, 409, 422],
         summary="Ask someone to be friends; if they already asked you, you are friends at once. 409 when "
                 "already friends, already asked, or at 5,000 friends")
    def request_friend(self, c):
        return call(self.social_feed.request_friend, c.user_id, c.body)

    @api("GET", "/friends/requests", query=Page, response=out.FriendRequestPage, tags=["friends"],
         summary="Friend requests waiting for your answer, newest first")
    def friend_requests(self, c):
        return call(self.social_feed.friend_requests, c.user_id, c.query)

    @api("POST", "/friends/requests/<request_id>/accept", response=out.FriendRequest, tags=["friends"],
         errors=[404, 409], summary="Accept a friend request sent to you (409 when either is at 5,000 friends)")
    def accept_friend_request(self, c):
        return call(self.social_feed.accept_friend_request, c.user_id, c.path["request_id"])

    @api("POST", "/friends/requests/<request_id>/decline", response=out.FriendRequest, tags=["friends"],
         errors=[404, 409], summary="Decline a friend request sent to you")
    def decline_friend_request(self, c):
        return call(self.social_feed.decline_friend_request, c.user_id, c.path["request_id"])

    @api("GET", "/friends", query=Page, response=out.FriendPage, tags=["friends"],
         summary="Your friends, newest friendship first")
    def friends(self, c):
        return call(self.social_feed.friends, c.user_id, c.query)

    @api("DELETE", "/friends/<user_id>", status=204, tags=["friends"], errors=[404],
         summary="Unfriend, for both; their moments leave your timeline at once")
    def remove_friend(self, c):
        call(self.social_feed.remove_friend, c.user_id, c.path["user_id"])
        return 204, None

    # -- moments ------------------------------------------------------------------------------------------
    @api("POST", "/moments", body=MomentInput, response=out.MomentCreated, status=201, tags=["moments"],
         errors=[404], summary="Post a moment: text, up to 9 https images, an optional product card")
    def post_moment(self, c):
        return call(self.social_feed.post_moment, c.user_id, c.body)

    @api("GET", "/timeline", query=Page, response=out.MomentPage, tags=["moments"],
         summary="Your and your friends' moments you may see, newest first")
    def timeline(self, c):
        return call(self.social_feed.timeline, c.user_id, c.query)

    @api("GET", "/moments/<moment_id>", response=out.MomentDetail, tags=["moments"], errors=[404],
         summary="A moment with the likes and comments of you and your friends")
    def get_moment(self, c):
        return call(self.social_feed.get_moment, c.user_id, c.path["moment_id"])

    @api("DELETE", "/moments/<moment_id>", status=204, tags=["moments"], errors=[404],
         summary="Delete your moment; it disappears from every timeline at once")
    def delete_moment(self, c):
        call(self.social_feed.delete_moment, c.user_id, c.path["moment_id"])
        return 204, None

    @api("POST", "/moments/<moment_id>/likes", response=out.Liked, status=201, tags=["moments"], errors=[404],
         summary="Like a moment you may see (once; liking again changes nothing)")
    def like(self, c):
        return call(self.social_feed.like, c.user_id, c.path["moment_id"])

    @api("DELETE", "/moments/<moment_id>/likes", status=204, tags=["moments"], errors=[404],
         summary="Take your like back")
    def unlike(self, c):
        call(self.social_feed.unlike, c.user_id, c.path["moment_id"])
        return 204, None

    @api("POST", "/moments/<moment_id>/comments", body=CommentInput, response=out.CommentPosted, status=201,
         tags=["moments"], errors=[404], summary="Comment on a moment you may see")
    def comment(self, c):
        return call(self.social_feed.comment, c.user_id, c.path["moment_id"], c.body)

    # -- shares -------------------------------------------------------------------------------------------
    @api("POST", "/shares", body=ShareInput, response=out.Share, status=201, tags=["shares"], errors=[404],
         summary="A share link for a published product (sharing itself earns nothing)")
    def create_share(self, c):
        share = call(self.social_feed.create_share, c.user_id, c.body)
        return {**share, "url": f"{c.request.host_url.rstrip('/')}{API_PREFIX}/s/{share['share_code']}"}

    @api("GET", "/s/<share_code>", auth="optional", response=out.ShareLanding, tags=["shares"], errors=[404],
         summary="Open a share link: the click is recorded (a signed-in viewer is bound to the sharer) and the "
                 "product returned")
    def open_share(self, c):
        share = call(self.social_feed.click_share, c.path["share_code"], c.user_id)
        view = self.products.get(share["product_id"])
        if view is None:
            view = call(self.catalog.get_product, share["product_id"])
            self.products.put(share["product_id"], view)
        return {"share_code": share["share_code"], "sharer_id": share["sharer_id"], "product": product_summary(view)}
