"""Domain errors, each carrying the HTTP status it maps to.

    GlimpseError (500)
    ├── BadRequest (400)            malformed body, broken JSON
    ├── Unauthorized (401)          API keys are on and none, or an unknown one, was sent
    ├── NotFound (404)              unknown job or artifact
    ├── RequestTimeout (408)        a request body that stalled or took too long to arrive
    ├── PayloadTooLarge (413)       too many bytes or pixels
    ├── UnsupportedImage (415)      not a decodable image of an accepted format
    ├── UnsupportedMediaType (415)  a body that is neither multipart nor JSON
    ├── InvalidParams (422)         params that fail validation; carries `errors`
    ├── TooManyRequests (429)       over the per-key rate limit; carries `retry_after`
    ├── ServiceUnavailable (503)    Redis unreachable, queue full; carries `retry_after`
    ├── DownloadFailed (502)        a model could not be fetched (offline, bad checksum)
    ├── GatewayTimeout (504)        a synchronous call outlived its time limit
    └── ModelError (500)            a model folder or card that cannot be used

The API renders them as problem+json; the CLI prints `title: detail` and exits non-zero.
"""

from __future__ import annotations

from typing import Any


class GlimpseError(Exception):
    status = 500
    title = "Internal error"

    def __init__(self, detail: str, *, errors: list[dict[str, Any]] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors


class BadRequest(GlimpseError):
    status = 400
    title = "Malformed request"


class Unauthorized(GlimpseError):
    status = 401
    title = "Unauthorized"

    def __init__(self, detail: str, *, invalid: bool = False) -> None:
        super().__init__(detail)
        self.invalid = invalid  # a key was sent but is not accepted (RFC 6750 invalid_token)


class NotFound(GlimpseError):
    status = 404
    title = "Not found"


class RequestTimeout(GlimpseError):
    status = 408
    title = "Request timeout"


class PayloadTooLarge(GlimpseError):
    status = 413
    title = "Payload too large"


class UnsupportedImage(GlimpseError):
    status = 415
    title = "Unsupported image"


class UnsupportedMediaType(GlimpseError):
    status = 415
    title = "Unsupported media type"


class InvalidParams(GlimpseError):
    status = 422
    title = "Invalid parameters"


class TooManyRequests(GlimpseError):
    status = 429
    title = "Too many requests"

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class ServiceUnavailable(GlimpseError):
    status = 503
    title = "Service unavailable"

    def __init__(self, detail: str, *, retry_after: int = 5) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


class DownloadFailed(GlimpseError):
    status = 502
    title = "Download failed"


class GatewayTimeout(GlimpseError):
    status = 504
    title = "Timed out"


class ModelError(GlimpseError):
    status = 500
    title = "Model unusable"
