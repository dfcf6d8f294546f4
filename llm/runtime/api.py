"""REST API for assistant threads and batch jobs (thin: parse, call the service, render)."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.exceptions import PermissionDenied
from rest_framework.request import Request
from rest_framework.response import Response

from llm.models import Message, Thread
from llm.runtime import assistant, jobs
from tenants.api import TenantAPIView
from tenants.permissions import request_has
from tenants.roles import Perm


class ThreadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Thread
        fields = ["id", "title", "model", "created_at", "updated_at"]
        read_only_fields = ["id", "created_at", "updated_at"]
        extra_kwargs = {"title": {"required": False}, "model": {"required": False}}


class _UserThreadView(TenantAPIView):
    required_perms = {"*": Perm.USE_ASSISTANT, "GET": Perm.USE_ASSISTANT}

    def user(self):
        user = self.request.user
        if not getattr(user, "pk", None):
            raise PermissionDenied("Assistant threads belong to a person; use a browser session.")
        return user


class ThreadListView(_UserThreadView):
    @extend_schema(responses=ThreadSerializer(many=True))
    def get(self, request: Request) -> Response:
        threads = Thread.objects.for_tenant(self.tenant).filter(user=self.user())
        return Response(ThreadSerializer(threads, many=True).data)

    @extend_schema(request=ThreadSerializer, responses={201: ThreadSerializer})
    def post(self, request: Request) -> Response:
        ser = ThreadSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        thread = assistant.thread_create(tenant=self.tenant, user=self.user(), **ser.validated_data)
        return Response(ThreadSerializer(thread).data, status=status.HTTP_201_CREATED)


class ThreadDetailView(_UserThreadView):
    @extend_schema(
        responses=inline_serializer(
            "ThreadDetail",
            {"thread": ThreadSerializer(), "messages": serializers.ListField(child=serializers.DictField())},
        )
    )
    def get(self, request: Request, thread_id: int) -> Response:
        thread = assistant.access_thread(tenant=self.tenant, user=self.user(), thread_id=thread_id)
        messages = [assistant.message_progress(m) for m in thread.messages.all()]
        return Response({"thread": ThreadSerializer(thread).data, "messages": messages})

    @extend_schema(request=ThreadSerializer, responses=ThreadSerializer)
    def patch(self, request: Request, thread_id: int) -> Response:
        thread = assistant.access_thread(tenant=self.tenant, user=self.user(), thread_id=thread_id)
        data = request.data if isinstance(request.data, dict) else {}
        thread = assistant.thread_rename(thread=thread, title=data.get("title", ""))
        return Response(ThreadSerializer(thread).data)

    @extend_schema(responses={204: None})
    def delete(self, request: Request, thread_id: int) -> Response:
        thread = assistant.access_thread(tenant=self.tenant, user=self.user(), thread_id=thread_id)
        assistant.thread_delete(thread=thread, actor=self.actor)
        return Response(status=status.HTTP_204_NO_CONTENT)


class MessagePostSerializer(serializers.Serializer):
    content = serializers.CharField(allow_blank=True)
    model = serializers.CharField(required=False, allow_blank=True, max_length=200)


class MessageListView(_UserThreadView):
    @extend_schema(request=MessagePostSerializer, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request, thread_id: int) -> Response:
        thread = assistant.access_thread(tenant=self.tenant, user=self.user(), thread_id=thread_id)
        ser = MessagePostSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        user_msg, reply = assistant.message_post(
            thread=thread,
            content=ser.validated_data["content"],
            model=ser.validated_data.get("model") or None,
        )
        reply.refresh_from_db()
        return Response(
            {"message": assistant.message_progress(user_msg), "reply": assistant.message_progress(reply)},
            status=status.HTTP_202_ACCEPTED,
        )


class MessageDetailView(_UserThreadView):
    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, thread_id: int, message_id: int) -> Response:
        thread = assistant.access_thread(tenant=self.tenant, user=self.user(), thread_id=thread_id)
        message = Message.objects.for_tenant(self.tenant).filter(thread=thread, id=message_id).first()
        if message is None:
            return Response({"detail": "No such message."}, status=status.HTTP_404_NOT_FOUND)
        return Response(assistant.message_progress(message))


class JobCreateSerializer(serializers.Serializer):
    model = serializers.CharField(default="default", max_length=200)
    requests = serializers.ListField(child=serializers.DictField(), allow_empty=True)
    concurrency = serializers.IntegerField(default=4)


class _JobView(TenantAPIView):
    def visible(self):
        return jobs.jobs_visible(
            tenant=self.tenant, actor=self.actor, see_all=request_has(self.request, Perm.ALL_JOBS)
        )

    def job(self, job_id: int):
        return jobs.access_job(
            tenant=self.tenant,
            job_id=job_id,
            actor=self.actor,
            see_all=request_has(self.request, Perm.ALL_JOBS),
        )


class JobListView(_JobView):
    required_perms = {"GET": Perm.RUN_JOBS, "POST": Perm.RUN_JOBS}

    @extend_schema(
        responses={200: {"type": "array", "items": {"type": "object"}}}, operation_id="llm_jobs_list"
    )
    def get(self, request: Request) -> Response:
        return Response([jobs.job_read(j, with_results=False) for j in self.visible()[:100]])

    @extend_schema(request=JobCreateSerializer, responses={202: OpenApiTypes.OBJECT})
    def post(self, request: Request) -> Response:
        ser = JobCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        job = jobs.job_create(tenant=self.tenant, actor=self.actor, **ser.validated_data)
        job.refresh_from_db()
        return Response(jobs.job_read(job, with_results=False), status=status.HTTP_202_ACCEPTED)


class JobDetailView(_JobView):
    required_perms = {"GET": Perm.RUN_JOBS, "DELETE": Perm.RUN_JOBS}

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def get(self, request: Request, job_id: int) -> Response:
        return Response(jobs.job_read(self.job(job_id)))

    @extend_schema(responses=OpenApiTypes.OBJECT)
    def delete(self, request: Request, job_id: int) -> Response:
        job = jobs.job_cancel(job=self.job(job_id), actor=self.actor)
        return Response(jobs.job_read(job, with_results=False))


class JobCancelView(_JobView):
    required_perms = {"POST": Perm.RUN_JOBS}

    @extend_schema(request=None, responses=OpenApiTypes.OBJECT)
    def post(self, request: Request, job_id: int) -> Response:
        job = jobs.job_cancel(job=self.job(job_id), actor=self.actor)
        return Response(jobs.job_read(job, with_results=False))
