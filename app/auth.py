"""API keys on the /v1 routes (glimpse/keys.py: how keys are made, and why digests only).

With `GLIMPSE_API_KEY_HASHES` empty every request is anonymous (owner ''), as before keys
existed. With digests configured a request to /v1 must carry a key, as
`Authorization: Bearer KEY` or `X-API-Key: KEY`, and its owner is the key's id. A job is
then visible only to its owner: another key gets the 404 an unknown id gets, never a 403,
so that job ids cannot be probed. Health, readiness, metrics, the docs and the web page stay
open (app/main.py includes their routers without these dependencies).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from glimpse.errors import NotFound, Unauthorized
from glimpse.keys import hash_key, key_id

_WHEN = " Required only when the server has API keys configured (GLIMPSE_API_KEY_HASHES)."
bearer = HTTPBearer(
    scheme_name="bearer",
    description="`Authorization: Bearer KEY` with a key from `glimpse keys new`." + _WHEN,
    auto_error=False,
)
api_key_header = APIKeyHeader(
    name="X-API-Key",
    scheme_name="apiKey",
    description="`X-API-Key: KEY`, the same keys as the bearer scheme." + _WHEN,
    auto_error=False,
)


class KeyRing:
    """The accepted keys, as digest → key id. Looking the presented key's digest up in a
    dict is safe without a constant-time compare: a timing difference could only reveal
    bits of a digest, and a digest does not authenticate (glimpse/keys.py)."""

    def __init__(self, digests: list[str]) -> None:
        self._ids = {digest: key_id(digest) for digest in digests}

    @property
    def enabled(self) -> bool:
        return bool(self._ids)

    def owner(self, key: str | None) -> str:
        """The key id of an accepted key; '' when keys are off (a key sent is ignored)."""
        if not self.enabled:
            return ""
        if not key or not key.strip():
            raise Unauthorized(
                "this server needs an API key: send `Authorization: Bearer KEY` or `X-API-Key: KEY`"
            )
        owner = self._ids.get(hash_key(key))
        if owner is None:
            raise Unauthorized("the API key is not accepted", invalid=True)
        return owner


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    header_key: Annotated[str | None, Depends(api_key_header)],
) -> str:
    """The owner id of the request (a router-wide dependency of every /v1 router)."""
    keys: KeyRing = request.app.state.keys
    return keys.owner(credentials.credentials if credentials is not None else header_key)


OwnerDep = Annotated[str, Depends(authenticate)]


def visible_job_id(
    request: Request,
    job_id: Annotated[str, Path(description="the job id (32 hex digits)")],
    owner: OwnerDep,
) -> str:
    """The job id of the path, once its job is known to belong to the caller. Without keys
    every job is everyone's, and no lookup is spent on it."""
    if owner and request.app.state.store.owner(job_id) != owner:
        raise NotFound(f"no explanation job {job_id!r}")
    return job_id


VisibleJobId = Annotated[str, Depends(visible_job_id)]
