"""Uploading pictures over HTTP against the real stack: what comes back is the picture without its metadata,
under a name that never changes content; what is not a picture, or too big, is refused before anything is stored;
the URL goes into a moment or a product; erasure takes a person's own pictures and leaves the shop's."""
import uuid

from tests.flows import expect
from tests.gateway.test_images_units import a_jpeg, a_png
from tests.orders.shop import open_shop


def upload(api, user, data, purpose=None, content_type="image/jpeg", status=201):
    path = "/media" + (f"?purpose={purpose}" if purpose else "")
    return expect(api.post(path, data=data, token=user["token"], headers={"Content-Type": content_type}), status)


def fetch(api, url):
    return api.session.get(api.base_url.removesuffix("/api/v1") + url)


def test_an_uploaded_photo_is_served_without_its_location_under_a_name_that_never_changes(api, mongo):
    user = api.register_user()
    # when a user uploads a phone photo (EXIF with a GPS position), twice (a retry)
    first = upload(api, user, a_jpeg(orientation=6))
    again = upload(api, user, a_jpeg(orientation=6))
    # then it is one picture, described as stored
    assert first == again and first["url"].startswith("/media/u-") and first["url"].endswith(".jpg")
    assert (first["content_type"], first["width"], first["height"]) == ("image/jpeg", 4000, 3000)
    assert mongo["quanzi_gateway"]["media"].count_documents({"owner_id": user["user_id"]}) == 1
    # and anyone fetching it gets the picture without the position, immutable, typed by what it is
    served = fetch(api, first["url"])
    assert served.status_code == 200 and served.headers["Content-Type"] == "image/jpeg"
    assert b"GPS" not in served.content and len(served.content) == first["bytes"]
    assert "immutable" in served.headers["Cache-Control"] and served.headers["X-Content-Type-Options"] == "nosniff"
    assert fetch(api, "/media/u-00000000000000000000000000000000.jpg").status_code == 404


def test_what_is_not_a_picture_or_is_too_big_is_refused_and_nothing_is_stored(api, mongo):
    user = api.register_user()
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    refused = upload(api, user, svg, content_type="image/svg+xml", status=422)
    assert refused["error"]["fields"]["_body"] == ["only JPEG, PNG or WebP pictures can be uploaded"]
    upload(api, user, b"", status=400)
    # a file over MEDIA_MAX_BYTES (5 MiB by default) is refused from its length, before it is read
    too_big = a_png() + b"\x00" * (5 * 1024 * 1024)
    assert api.post("/media", data=too_big, token=user["token"]).status_code == 413
    upload(api, user, a_png(), purpose="wallpaper", status=400)
    assert api.post("/media", data=a_png()).status_code == 401
    assert mongo["quanzi_gateway"]["media"].count_documents({"owner_id": user["user_id"]}) == 0


def test_uploads_go_into_moments_and_products_and_erasure_takes_only_the_persons_own(api, mongo):
    owner, merchant, _, _ = open_shop(api)
    # given a merchant who shows a product with an uploaded picture and posts a moment with another
    product_picture = upload(api, owner, a_png(800, 800), purpose="product")["url"]
    holiday = upload(api, owner, a_jpeg(1200, 900), purpose="moment")["url"]
    product = expect(api.post("/products", token=owner["token"], json={
        "merchant_id": merchant["merchant_id"], "title": f"Tea {uuid.uuid4().hex[:6]}", "description": "new crop",
        "category": "tea", "images": [product_picture], "skus": [{"attrs": {}, "price_fen": 1000, "stock": 5}],
        "commission": {"level1_bp": 500, "level2_bp": 0}, "group_buy": None}), 201)
    moment = expect(api.post("/moments", json={"text": "West Lake", "images": [holiday], "visibility": "public"},
                             token=owner["token"]), 201)
    assert expect(api.get(f"/products/{product['product_id']}"), 200)["images"] == [product_picture]
    assert expect(api.get(f"/moments/{moment['moment_id']}", token=owner["token"]), 200)["images"] == [holiday]
    # an export lists the pictures (not their bytes)
    export = expect(api.get("/me/export", token=owner["token"]), 200)
    [gateway] = [s for s in export["services"] if s["service"] == "gateway"]
    assert sorted(m["purpose"] for m in gateway["collections"]["media"]) == ["moment", "product"]
    # when the person erases the account
    expect(api.request("DELETE", "/me", json={"password": owner["password"]}, token=owner["token"]), 204)
    # then their moment's picture is gone, the shop's product picture stays
    assert fetch(api, holiday).status_code == 404
    assert fetch(api, product_picture).status_code == 200
