"""Template context: the current tenant, the user's role and permissions, the tenant switcher."""

from django.http import HttpRequest

from .roles import PERMISSIONS, role_has
from .services import user_tenants


def tenant(request: HttpRequest) -> dict:
    current = getattr(request, "tenant", None)
    role = getattr(request, "role", None)
    user = getattr(request, "user", None)
    if current is None or user is None or not user.is_authenticated:
        return {"tenant": None, "role": None, "perms_for": {}}
    return {
        "tenant": current,
        "role": role,
        "perms_for": {perm: role_has(role, perm) for perm in PERMISSIONS},
        "user_tenants": lambda: user_tenants(user),
    }
