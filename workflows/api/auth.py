"""Who is calling: the bearer token of `Authorization: Bearer <token>`, and what its user's
role lets them do (the console's permissions: Viewers read, Operators also act).

Nothing here reads the session or a cookie: a request is its token's user, or nobody.
"""

from __future__ import annotations

from django.contrib.auth.base_user import AbstractBaseUser
from django.http import HttpRequest

from ..roles import OPERATE_PERMISSION, OPERATORS, VIEWERS
from .errors import NotAuthenticated, PermissionDenied
from .tokens import token_for

# RFC 6750: a 401 names the scheme the client should use.
_CHALLENGE = 'Bearer realm="durable"'


def authenticate(request: HttpRequest) -> AbstractBaseUser:
    """The user of the request's bearer token; NotAuthenticated (401) without a valid one."""
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, presented = header.partition(" ")
    if not header:
        raise NotAuthenticated(
            "this API needs a token: send Authorization: Bearer <token> "
            "(python manage.py workflows token create USERNAME)",
            headers={"WWW-Authenticate": _CHALLENGE},
        )
    token = token_for(presented.strip()) if scheme.lower() == "bearer" else None
    if token is None:
        raise NotAuthenticated(
            "the token is not valid (mistyped, revoked, or its user is inactive)",
            headers={"WWW-Authenticate": f'{_CHALLENGE}, error="invalid_token"'},
        )
    return token.user


def authorize(user: AbstractBaseUser, permission: str) -> None:
    """PermissionDenied (403) unless `user` has `permission` (a role's, or a superuser)."""
    if not user.has_perm(permission):
        role = OPERATORS if permission == OPERATE_PERMISSION else f"{VIEWERS} or {OPERATORS}"
        raise PermissionDenied(
            f'user "{user.get_username()}" may not do this: it needs the {role} group (or superuser)'
        )
