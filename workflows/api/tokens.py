"""API tokens: create, list, revoke, and find the token a request presents.

A token is "dur_" and 43 random URL-safe characters (256 bits). Only its SHA-256 is
stored, so the database (or a backup of it) holds nothing a client could present; the
token itself is shown once, when it is created. Its first characters (`prefix`) are kept
in clear so that a listing can tell tokens apart.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone

from ..models import ApiToken
from ..names import checked_name, shown, text_problem

TOKEN_PREFIX = "dur_"
PREFIX_LENGTH = len(TOKEN_PREFIX) + 8
MAX_TOKEN_NAME = ApiToken._meta.get_field("name").max_length
# A token longer than this is not one of ours: refused without hashing it.
MAX_TOKEN_LENGTH = 200
# last_used_at is written at most this often per token, so a busy client does not turn
# every read into a write.
LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode(errors="surrogatepass")).hexdigest()


def create_token(*, username: str, name: str | None = None) -> tuple[ApiToken, str]:
    """A new token for the user `username`: (the stored row, the token to hand out once).

    `name` labels it (for `token list` and `token revoke`); by default its prefix.
    Raises ValueError for an unknown user or a name already taken.
    """
    user_model = get_user_model()
    user = (
        None
        if text_problem(username)  # a NUL is an error on PostgreSQL: no user has one anyway
        else user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
    )
    if user is None:
        raise ValueError(f"no user named {shown(username)}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    prefix = token[:PREFIX_LENGTH]
    name = prefix if name is None else checked_name(name, what="token name", max_length=MAX_TOKEN_NAME)
    if not name.isprintable():  # it is printed in a terminal by `token list`
        raise ValueError(
            f"token name {shown(name)} contains a line break, tab or other control character: "
            "use letters, digits, spaces and punctuation"
        )
    try:
        with transaction.atomic():
            row = ApiToken.objects.create(
                user=user, name=name, prefix=prefix, key_hash=hash_token(token), created_at=timezone.now()
            )
    except IntegrityError:
        raise ValueError(
            f"{shown(username)} already has a token named {shown(name)}: choose another --name"
        ) from None
    return row, token


def list_tokens() -> list[ApiToken]:
    """Every token, oldest first, with its user."""
    return list(ApiToken.objects.select_related("user").order_by("created_at", "id"))


def revoke_token(*, name: str, username: str | None = None) -> None:
    """Delete the token named `name` (requests presenting it get 401 from now on): the
    token of that name of the user `username`, or the only token of that name."""
    user_model = get_user_model()
    matching = ApiToken.objects.filter(name=name)
    if username is not None:
        matching = matching.filter(**{f"user__{user_model.USERNAME_FIELD}": username})
    with transaction.atomic():
        found = list(matching.select_for_update().select_related("user")[:2])
        if not found:
            whose = "" if username is None else f" of user {shown(username)}"
            raise ValueError(f"no token named {shown(name)}{whose} (see `workflows token list`)")
        if len(found) > 1:
            raise ValueError(
                f"several users have a token named {shown(name)}: say whose with --user USERNAME"
            )
        found[0].delete()


def token_for(presented: str) -> ApiToken | None:
    """The token a request presented, with its user, or None (also when the user is
    inactive); records that it was used."""
    if not presented.startswith(TOKEN_PREFIX) or len(presented) > MAX_TOKEN_LENGTH:
        return None
    # A lookup by hash needs no constant-time comparison: what the database compares is
    # the SHA-256 of the presented text, so how long the comparison takes tells a caller
    # at most how much of a hash they guessed, which brings them no closer to a token
    # that has it (they cannot choose a hash's prefix).
    token = ApiToken.objects.select_related("user").filter(key_hash=hash_token(presented)).first()
    if token is None or not token.user.is_active:
        return None
    _record_use(token)
    return token


def _record_use(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
