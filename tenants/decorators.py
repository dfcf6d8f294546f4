"""Page guards: logged in, a workspace in scope, and the role a page needs (403 page otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.shortcuts import render

from .roles import role_has


def tenant_required(perm: str | None = None) -> Callable:
    def decorator(view: Callable) -> Callable:
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if getattr(request, "tenant", None) is None:
                return render(request, "tenants/no_workspace.html", status=403)
            if perm is not None and not role_has(request.role, perm):
                return render(request, "403.html", {"needed": perm}, status=403)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator
