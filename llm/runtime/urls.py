"""URLs of the usage, assistant and batch-job APIs (mounted under /api/)."""

from django.urls import path

from llm.runtime import api as runtime_api
from llm.usage.api import UsageView

urlpatterns = [
    path("llm/usage", UsageView.as_view(), name="api-llm-usage"),
    path("llm/threads", runtime_api.ThreadListView.as_view(), name="api-threads"),
    path("llm/threads/<int:thread_id>", runtime_api.ThreadDetailView.as_view(), name="api-thread"),
    path(
        "llm/threads/<int:thread_id>/messages",
        runtime_api.MessageListView.as_view(),
        name="api-thread-messages",
    ),
    path(
        "llm/threads/<int:thread_id>/messages/<int:message_id>",
        runtime_api.MessageDetailView.as_view(),
        name="api-thread-message",
    ),
    path("llm/jobs", runtime_api.JobListView.as_view(), name="api-jobs"),
    path("llm/jobs/<int:job_id>", runtime_api.JobDetailView.as_view(), name="api-job"),
    path("llm/jobs/<int:job_id>/cancel", runtime_api.JobCancelView.as_view(), name="api-job-cancel"),
]
