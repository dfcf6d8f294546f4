"""Page URLs of the llm app."""

from django.urls import path

from llm import pages

urlpatterns = [
    path("usage/", pages.usage, name="usage"),
    path("usage.csv", pages.usage_csv, name="usage_csv"),
    path("settings/llm/", pages.llm_settings, name="llm_settings"),
    path("assistant/", pages.assistant, name="assistant"),
    path("routes/", pages.routes, name="routes"),
    path("assistant/<int:thread_id>/", pages.assistant, name="assistant_thread"),
]
