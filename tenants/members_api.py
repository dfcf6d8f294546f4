"""Tenant REST API for pending invitations: list, invite, resend, revoke (owners and admins, by session)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from . import services
from .api import TenantAPIView
from .models import Invitation
from .roles import Perm, Role


class InvitationSerializer(serializers.ModelSerializer):
    invited_by = serializers.SlugRelatedField(slug_field="email", read_only=True)

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "invited_by", "created_at", "accepted_at", "revoked_at"]
        read_only_fields = fields


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class InvitationSentSerializer(InvitationSerializer):
    link = serializers.CharField(read_only=True, help_text="The acceptance link (also e-mailed).")

    class Meta(InvitationSerializer.Meta):
        fields = [*InvitationSerializer.Meta.fields, "link"]
        read_only_fields = fields


def _sent(invitation: Invitation, link: str) -> dict:
    return {**InvitationSerializer(invitation).data, "link": link}


class InvitationListView(TenantAPIView):
    required_perms = {"GET": Perm.MANAGE_MEMBERS, "POST": Perm.MANAGE_MEMBERS}

    @extend_schema(responses=InvitationSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(
            InvitationSerializer(services.invitations_pending(tenant=self.tenant), many=True).data
        )

    @extend_schema(request=InvitationCreateSerializer, responses={201: InvitationSentSerializer})
    def post(self, request: Request) -> Response:
        ser = InvitationCreateSerializer(data=request.data)
        ser.is_valid(raise_exception=True)
        invitation, link = services.invitation_create(
            tenant=self.tenant, actor=self.actor, **ser.validated_data
        )
        return Response(_sent(invitation, link), status=status.HTTP_201_CREATED)


class InvitationDetailView(TenantAPIView):
    required_perms = {"GET": Perm.MANAGE_MEMBERS, "DELETE": Perm.MANAGE_MEMBERS}

    @extend_schema(responses=InvitationSerializer)
    def get(self, request: Request, invitation_id: int) -> Response:
        invitation = services.access_invitation(tenant=self.tenant, invitation_id=invitation_id)
        return Response(InvitationSerializer(invitation).data)

    @extend_schema(responses=InvitationSerializer, description="Revoke: the invitation's links stop working.")
    def delete(self, request: Request, invitation_id: int) -> Response:
        invitation = services.access_invitation(tenant=self.tenant, invitation_id=invitation_id)
        return Response(
            InvitationSerializer(services.invitation_revoke(invitation=invitation, actor=self.actor)).data
        )


class InvitationResendView(TenantAPIView):
    required_perms = {"POST": Perm.MANAGE_MEMBERS}

    @extend_schema(request=None, responses=InvitationSentSerializer)
    def post(self, request: Request, invitation_id: int) -> Response:
        invitation = services.access_invitation(tenant=self.tenant, invitation_id=invitation_id)
        return Response(_sent(*services.invitation_resend(invitation=invitation, actor=self.actor)))
