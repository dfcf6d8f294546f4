"""Pages: landing, sign-up, log-in, members, agents, keys, audit."""

from django.shortcuts import render


def landing(request):
    return render(request, "landing.html")
