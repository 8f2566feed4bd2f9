"""Token checks before the guard answers anything, with MONAI Label's authentication on."""
import re

from fastapi import HTTPException

PUBLIC = re.compile(r"/(|docs|openapi\.json|favicon\.ico|auth(/.*)?|static(/.*)?)")  # no RBAC in MONAI Label


def api_path(scope) -> str:
    """The request path without MONAI Label's API prefix (settings.MONAI_LABEL_API_STR)."""
    from monailabel.config import settings

    path = scope.get("path", "")
    prefix = settings.MONAI_LABEL_API_STR or ""
    return path[len(prefix):] if prefix and path.startswith(prefix) else path


def bearer_token(scope) -> str:
    """What follows `Bearer ` in the Authorization header, as sent; "" without a Bearer header."""
    headers = {k.lower(): v for k, v in scope.get("headers", [])}
    scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
    return token if scheme.lower() == "bearer" else ""


def authenticate(scope) -> None:
    """With MONAI Label's authentication on, a request needs a valid token before the guard looks at it
    (MONAI Label checks roles later): otherwise anyone could learn task names from the guard's answers or
    make the server load uploaded weights."""
    from monailabel.config import settings

    if not settings.MONAI_LABEL_AUTH_ENABLE or PUBLIC.fullmatch(api_path(scope)):
        return
    import jwt
    from monailabel.endpoints.user.auth import from_token

    unauthorized = HTTPException(status_code=401, detail="Could not validate credentials",
                                 headers={"WWW-Authenticate": "Bearer"})
    token = bearer_token(scope)
    if not token.strip():
        raise unauthorized
    try:
        jwt.get_unverified_header(token)  # malformed tokens fail here, before the realm's key is fetched
        from_token(token.strip())
    except jwt.InvalidTokenError:
        raise unauthorized from None
