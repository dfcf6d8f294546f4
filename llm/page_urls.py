"""Page URLs of the llm app."""

from django.urls import path

from llm import connect_pages, pages

urlpatterns = [
    path("usage/", pages.usage, name="usage"),
    path("usage.csv", pages.usage_csv, name="usage_csv"),
    path("settings/llm/", pages.llm_settings, name="llm_settings"),
    path("settings/llm/openrouter/connect", connect_pages.openrouter_connect, name="openrouter_connect"),
    path("settings/llm/openrouter/callback", connect_pages.openrouter_callback, name="openrouter_callback"),
    path("assistant/", pages.assistant, name="assistant"),
    path("routes/", pages.routes, name="routes"),
    path("assistant/<int:thread_id>/", pages.assistant, name="assistant_thread"),
]
