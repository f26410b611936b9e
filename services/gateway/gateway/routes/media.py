"""Pictures people upload (a moment's photos, a product's pictures, an avatar) and serving them at /media/<name>.

An upload is the file's bytes as the body. What it is comes from the bytes (gateway/images.py): JPEG, PNG or WebP
of a sensible size, stored without the metadata a phone writes into it (the GPS position, the device). Its name is
derived from the uploader and the bytes (the same picture sent twice is one upload, whatever the retries), so a
name never changes content and is served as immutable. Nothing a user uploads is ever served as script: no SVG, and
every picture goes out with its sniffed type, `nosniff` and the API's `default-src 'none'` policy."""
import hashlib

from werkzeug.wrappers import Response

from gateway import images, schemas_media as out, web
from gateway.http import api
from kit.errors import NotFound, RuleRefused
from kit.validation import utcnow

UPLOAD = {"media_types": ["image/jpeg", "image/png", "image/webp"], "limit": "media_max_bytes"}
UPLOADED_PREFIX = "u-"


def upload_name(owner_id, data, extension):
    """u-<32 hex>.<ext>: one of the names contracts.api.fields.LOCAL_IMAGE_PATTERN accepts in images."""
    digest = hashlib.sha256(owner_id.encode() + b"\n" + data).hexdigest()[:32]
    return f"{UPLOADED_PREFIX}{digest}.{extension}"


class MediaRoutes:
    @api("POST", "/media", query=out.UploadQuery, response=out.Upload, status=201, tags=["media"], upload=UPLOAD,
         summary="Upload a picture (the file's bytes as the body): JPEG, PNG or WebP, at most MEDIA_MAX_BYTES and "
                 "10,000 px a side; stored without its EXIF/XMP metadata (location, device; a JPEG keeps its "
                 "orientation). Answers the /media URL to put in a moment's or a product's images")
    def upload_media(self, c):
        try:
            kind, width, height, data = images.clean(c.upload)
        except images.ImageRefused as refused:
            raise RuleRefused(str(refused), {"_body": [str(refused)]})
        extension, content_type = images.KINDS[kind]
        record = {"_id": upload_name(c.user_id, data, extension), "owner_id": c.user_id,
                  "purpose": c.query["purpose"], "content_type": content_type, "bytes": len(data),
                  "width": width, "height": height, "created_at": utcnow()}
        saved = self.store.save_media(record, data)
        return 201, {"url": f"/media/{saved['_id']}", "content_type": saved["content_type"], "bytes": saved["bytes"],
                     "width": saved["width"], "height": saved["height"]}

    @api("GET", "/media/<name>", auth=None, prefix="", document=False)
    def web_media(self, c):
        """An uploaded picture (u-…), or one shipped with the app (the demo's)."""
        name = c.path["name"]
        if not name.startswith(UPLOADED_PREFIX):
            return web.media(c.request, name)
        found = self.store.media_blob(name)
        if found is None:
            raise NotFound("no such picture")
        content_type, data = found
        response = Response(data, mimetype=content_type)
        response.headers["Cache-Control"] = web.IMMUTABLE
        return response
