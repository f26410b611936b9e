"""Pictures from the phone, added as a person adds them (the file picker of the page): a moment with two photos, one
of them carrying the GPS position where it was taken, shows both to a friend, decoded by the browser, and the
position never leaves the server; a merchant lists a product with an uploaded picture that shoppers see."""
import base64
import struct
import uuid

from tests.flows import approved_merchant, expect
from tests.gateway.test_images_units import exif_block, segment
from tests.social.social_flows import befriend


def camera_jpeg(page, width, height, colour):
    """A real JPEG, encoded by the browser's own encoder, as a camera app would hand one over."""
    data_url = page.driver.execute_script("""
        const c = document.createElement('canvas'); c.width = arguments[0]; c.height = arguments[1];
        const g = c.getContext('2d'); g.fillStyle = arguments[2]; g.fillRect(0, 0, c.width, c.height);
        g.fillStyle = '#fff'; g.fillRect(0, 0, c.width / 4, c.height / 4);
        return c.toDataURL('image/jpeg', 0.9)""", width, height, colour)
    return base64.b64decode(data_url.split(",", 1)[1])


def with_location(jpeg):
    """The JPEG with the EXIF block a phone writes (orientation, camera make, a GPS position) after its header."""
    cut = 4 + struct.unpack(">H", jpeg[4:6])[0] if jpeg[2:4] == b"\xff\xe0" else 2
    return jpeg[:cut] + segment(0xE1, exif_block(orientation=1)) + jpeg[cut:]


def pick_files(page, tmp_path, *pictures):
    """Choose files in the uploader's picker (what tapping it and choosing from the album does)."""
    paths = []
    for n, data in enumerate(pictures):
        path = tmp_path / f"IMG_{n:04d}.jpg"
        path.write_bytes(data)
        paths.append(str(path))
    picker = page.driver.find_element("css selector", "[data-test=picture-uploader] input[type=file]")
    picker.send_keys("\n".join(paths))
    page.wait(lambda: len(page.driver.find_elements("css selector", ".van-uploader__preview")) == len(paths)
              and "上传中" not in page.text(), message="the pictures did not finish uploading")


def shown_sizes(page, css):
    """(naturalWidth, naturalHeight) of each picture under `css` once the browser decoded it."""
    page.wait(lambda: page.driver.execute_script(
        "const imgs = document.querySelectorAll(arguments[0]);"
        "return imgs.length > 0 && [...imgs].every((i) => i.complete && i.naturalWidth > 0)", css),
        message=f"pictures under {css} were not decoded")
    return page.driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map((i) => [i.naturalWidth, i.naturalHeight])", css)


def test_a_moment_with_photos_from_the_album_shows_them_to_a_friend_without_where_they_were_taken(page, api, tmp_path):
    author, friend = api.register_user(nickname="摄影师小林"), api.register_user(nickname="好友阿杰")
    befriend(api, friend, author)
    text = f"西湖的早晨 {uuid.uuid4().hex[:4]}"
    # given two photos on the author's phone, one of them with the position it was taken at
    page.sign_in_as(author)
    page.open("/#/moments").sees("朋友圈")
    photos = with_location(camera_jpeg(page, 320, 240, "#3a7")), camera_jpeg(page, 200, 300, "#c33")
    # when the author picks them in the moment's picture picker, writes a line and posts
    pick_files(page, tmp_path, *photos)
    page.screenshot("picked")
    page.type("[data-test=moment-text]", text).click("[data-test=post-moment]").sees(text)
    # then a friend sees both photos in the timeline, decoded at their own sizes
    page.sign_out()
    page.sign_in_as(friend)
    page.open("/#/moments").sees(text)
    assert sorted(shown_sizes(page, "[data-test=moment-pictures] img")) == [[200, 300], [320, 240]]
    page.screenshot("friend-sees-photos")
    # and what the server gives anyone has no position and no camera in it
    moment = expect(api.get("/timeline", token=friend["token"]), 200)["items"][0]
    assert moment["text"] == text and len(moment["images"]) == 2
    for url in moment["images"]:
        served = api.session.get(api.base_url.removesuffix("/api/v1") + url)
        assert served.status_code == 200 and b"GPS" not in served.content and b"Pho\x00" not in served.content


def test_a_merchant_lists_a_product_with_a_picture_from_the_phone_and_shoppers_see_it(page, api, tmp_path):
    owner, merchant = approved_merchant(api, name=f"拍照小店 {uuid.uuid4().hex[:6]}")
    title = f"手工红茶 {uuid.uuid4().hex[:6]}"
    page.sign_in_as(owner)
    page.open("/merchant/").sees("发布商品")
    # when the merchant picks a photo for the product and lists it
    pick_files(page, tmp_path, camera_jpeg(page, 480, 480, "#a52"))
    page.type("[data-test=p-title]", title).type("[data-test=p-category]", "茶叶")
    page.type("[data-test=sku-name]", "200g").type("[data-test=sku-price]", "38.00").type("[data-test=sku-stock]", "10")
    page.click("[data-test=create-product]").sees(f"已上架：{title}")
    # then a shopper opening the product sees that picture
    found = expect(api.get("/products", params={"q": title.split()[1]}), 200)["items"][0]
    product = expect(api.get(f"/products/{found['product_id']}"), 200)
    assert product["images"][0].startswith("/media/u-")
    page.sign_out()
    page.open(f"/#/p/{product['product_id']}").sees(title, "¥38.00")
    assert [480, 480] in shown_sizes(page, "img[src^='/media/u-']")
    page.screenshot("product-with-photo")
