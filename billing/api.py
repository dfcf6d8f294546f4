"""Billing REST API (thin: parse, call a service or selector, render)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from billing import alerts, caps, managed, notifications, plans
from billing.models import Notification, Plan
from billing.stripe import sync as stripe_sync
from billing.stripe.client import BillingError
from billing.summary import billing_summary
from tenants.api import TenantAPIView
from tenants.models import Agent, User
from tenants.roles import Perm
from tenants.services import access_agent


def _field_errors(exc: ValidationError) -> Response:
    body = exc.message_dict if hasattr(exc, "error_dict") else {"non_field_errors": exc.messages}
    return Response(body, status=status.HTTP_400_BAD_REQUEST)


def _billing_error(exc: BillingError) -> Response:
    code: int = status.HTTP_503_SERVICE_UNAVAILABLE if exc.retryable else status.HTTP_400_BAD_REQUEST
    if exc.code == "card_declined" or exc.code == "payment_failed":
        code = status.HTTP_402_PAYMENT_REQUIRED
    return Response({"detail": exc.message, "code": exc.code}, status=code)


class CapsSerializer(serializers.Serializer):
    warn_tcu = serializers.IntegerField(
        allow_null=True, help_text="Your own warn level over all calls, every mode; null = none"
    )
    hard_tcu = serializers.IntegerField(
        allow_null=True, help_text="Your own hard cap over all calls, every mode; null = none"
    )
    confirm = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Set a hard cap at or below this month's usage anyway (it refuses every paid call at once); "
        "without it such a cap is refused with a hard_tcu error",
    )


class CapsReadSerializer(serializers.Serializer):
    warn_tcu = serializers.IntegerField(
        allow_null=True, help_text="The warn level that applies: your own, else the guardrail; null = none"
    )
    hard_tcu = serializers.IntegerField(
        allow_null=True, help_text="The hard cap that applies: your own, else the guardrail; null = none"
    )
    own_warn_tcu = serializers.IntegerField(allow_null=True, help_text="Your own warn level; null = none")
    own_hard_tcu = serializers.IntegerField(allow_null=True, help_text="Your own hard cap; null = none")
    platform_warn_tcu = serializers.IntegerField(
        help_text="The platform's guardrail on platform-managed calls: warn level (0 = none included)"
    )
    platform_hard_tcu = serializers.IntegerField(
        help_text="The platform's guardrail on platform-managed calls: hard cap (0 = none included)"
    )
    plan_warn_tcu = serializers.IntegerField(help_text="Same as platform_warn_tcu (earlier name)")
    plan_hard_tcu = serializers.IntegerField(help_text="Same as platform_hard_tcu (earlier name)")
    warn_overridden = serializers.BooleanField(help_text="A warn level of your own is set")
    hard_overridden = serializers.BooleanField(help_text="A hard cap of your own is set")
    tcu_usd = serializers.FloatField()


class CapsView(TenantAPIView):
    """The tenant's own monthly TCU caps (warn and hard; every mode counts), next to the platform's guardrail."""

    required_perms = {"GET": Perm.MANAGE_CAPS, "PUT": Perm.MANAGE_CAPS, "PATCH": Perm.MANAGE_CAPS}

    @extend_schema(responses=CapsReadSerializer)
    def get(self, request: Request) -> Response:
        return Response(caps.caps_read(tenant=self.tenant))

    @extend_schema(request=CapsSerializer, responses=CapsReadSerializer)
    def put(self, request: Request) -> Response:
        data = request.data if isinstance(request.data, dict) else {}
        unknown = set(data) - {"warn_tcu", "hard_tcu", "confirm"}
        if unknown:
            return Response({name: ["Unknown field."] for name in sorted(unknown)}, status=400)
        missing = {"warn_tcu", "hard_tcu"} - set(data) if request.method == "PUT" else set()
        if missing:
            return Response(
                {name: ["This field is required (null = no cap of your own)."] for name in missing},
                status=400,
            )
        confirm = data.get("confirm", False)
        if not isinstance(confirm, bool):
            return Response({"confirm": ["Must be true or false."]}, status=400)
        current = caps.caps_read(tenant=self.tenant)
        warn = data.get("warn_tcu", current["own_warn_tcu"])
        hard = data.get("hard_tcu", current["own_hard_tcu"])
        try:
            return Response(
                caps.caps_update(
                    tenant=self.tenant, actor=self.actor, warn_tcu=warn, hard_tcu=hard, confirm=confirm
                )
            )
        except ValidationError as exc:
            if caps.needs_confirm(exc):
                return Response(
                    {"hard_tcu": [f'{exc.messages[0]} Send "confirm": true to set it anyway.']}, status=400
                )
            return _field_errors(exc)

    patch = put


class SummaryView(TenantAPIView):
    """Period, plan, TCU used and caps, included/used/overage tokens, amount due and Stripe invoices."""

    required_perms = {"GET": Perm.VIEW_USAGE}

    @extend_schema(
        responses=inline_serializer(
            "BillingSummary",
            {
                "period": serializers.CharField(),
                "plan": serializers.CharField(),
                "tcu_used": serializers.IntegerField(help_text="TCU of every call this period, every mode"),
                "warn_tcu": serializers.IntegerField(
                    allow_null=True,
                    help_text="The warn level that applies: own_warn_tcu, else the guardrail's",
                ),
                "hard_tcu": serializers.IntegerField(
                    allow_null=True, help_text="The hard cap that applies: own_hard_tcu, else the guardrail"
                ),
                "own_warn_tcu": serializers.IntegerField(
                    allow_null=True, help_text="Your own warn level (counts tcu_used); null = none"
                ),
                "own_hard_tcu": serializers.IntegerField(
                    allow_null=True, help_text="Your own hard cap (counts tcu_used); null = none"
                ),
                "platform_tcu_used": serializers.IntegerField(help_text="TCU of platform-managed calls"),
                "platform_warn_tcu": serializers.IntegerField(
                    help_text="The platform's guardrail, warn level (counts platform_tcu_used; 0 = none)"
                ),
                "platform_hard_tcu": serializers.IntegerField(
                    help_text="The platform's guardrail, hard cap (counts platform_tcu_used; 0 = none)"
                ),
                "included_tokens": serializers.IntegerField(),
                "used_tokens": serializers.IntegerField(),
                "overage_tokens": serializers.IntegerField(),
                "overage_amount_usd": serializers.CharField(),
                "amount_due_usd": serializers.CharField(),
                "invoices": serializers.ListField(child=serializers.DictField()),
                "managed": inline_serializer(
                    "BillingSummaryManagedAgent",
                    {
                        "agent": serializers.CharField(allow_null=True),
                        "agent_name": serializers.CharField(),
                        "tier": serializers.CharField(),
                        "tier_name": serializers.CharField(),
                        "price_usd": serializers.CharField(),
                        "included_tokens": serializers.IntegerField(),
                        "used_tokens": serializers.IntegerField(),
                        "overage_tokens": serializers.IntegerField(),
                        "overage_usd_per_mtok": serializers.CharField(),
                        "overage_amount_usd": serializers.CharField(),
                    },
                    many=True,
                ),
            },
        )
    )
    def get(self, request: Request) -> Response:
        period = request.query_params.get("period")
        try:
            return Response(billing_summary(tenant=self.tenant, period=period))
        except ValueError as exc:
            return Response({"period": [str(exc)]}, status=400)


class PlanSerializer(serializers.ModelSerializer):
    class Meta:
        model = Plan
        fields = [
            "slug",
            "name",
            "description",
            "tier",
            "price_flat_usd",
            "price_per_agent_usd",
            "platform_allowed",
            "included_tokens",
            "overage_usd_per_mtok",
            "rpm_tenant",
            "rpm_key",
            "max_concurrency",
            "monthly_request_cap",
        ]
        read_only_fields = fields


class PlanListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_USAGE}

    @extend_schema(responses=PlanSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(PlanSerializer(Plan.objects.filter(is_public=True, is_active=True), many=True).data)


class PlanChangeView(TenantAPIView):
    """Change plan: `{"plan": "pro"}` → the new plan, or a Stripe Checkout URL when a card is needed."""

    required_perms = {"GET": Perm.VIEW_USAGE, "POST": Perm.MANAGE_BILLING}

    @extend_schema(
        responses=inline_serializer(
            "CurrentPlan", {"plan": serializers.CharField(), "status": serializers.CharField()}
        )
    )
    def get(self, request: Request) -> Response:
        sub = plans.ensure_subscription(self.tenant)
        return Response({"plan": sub.plan.slug, "status": sub.status})

    @extend_schema(
        request=inline_serializer("PlanChange", {"plan": serializers.CharField()}),
        responses=inline_serializer(
            "PlanChanged",
            {
                "plan": serializers.CharField(),
                "status": serializers.CharField(),
                "checkout_url": serializers.URLField(allow_null=True),
            },
        ),
    )
    def post(self, request: Request) -> Response:
        slug = request.data.get("plan") if isinstance(request.data, dict) else None
        if not slug or not isinstance(slug, str):
            return Response({"plan": ["This field is required."]}, status=400)
        try:
            result = plans.plan_change(tenant=self.tenant, actor=self.actor, plan_slug=slug)
        except ValidationError as exc:
            return _field_errors(exc)
        except BillingError as exc:
            return _billing_error(exc)
        return Response(
            {
                "plan": result.subscription.plan.slug,
                "status": result.subscription.status,
                "checkout_url": result.checkout_url,
            }
        )


class PortalView(TenantAPIView):
    """A Stripe Billing Portal URL (payment method, invoices)."""

    required_perms = {"POST": Perm.MANAGE_BILLING}

    @extend_schema(request=None, responses=inline_serializer("PortalUrl", {"url": serializers.URLField()}))
    def post(self, request: Request) -> Response:
        try:
            return Response({"url": stripe_sync.portal_url(self.tenant)})
        except BillingError as exc:
            return _billing_error(exc)


class AgentBudgetView(TenantAPIView):
    """An Agent's monthly TCU budget (null = none)."""

    required_perms = {"GET": Perm.MANAGE_CAPS, "PUT": Perm.MANAGE_CAPS}

    @extend_schema(
        responses=inline_serializer(
            "AgentBudget",
            {"agent": serializers.CharField(), "monthly_tcu": serializers.IntegerField(allow_null=True)},
        )
    )
    def get(self, request: Request, slug: str) -> Response:
        agent = access_agent(tenant=self.tenant, slug_or_id=slug)
        return Response(caps.agent_budget_read(tenant=self.tenant, agent=agent))

    @extend_schema(
        request=inline_serializer(
            "AgentBudgetUpdate", {"monthly_tcu": serializers.IntegerField(allow_null=True)}
        ),
        responses=inline_serializer(
            "AgentBudgetRead",
            {"agent": serializers.CharField(), "monthly_tcu": serializers.IntegerField(allow_null=True)},
        ),
    )
    def put(self, request: Request, slug: str) -> Response:
        agent = access_agent(tenant=self.tenant, slug_or_id=slug)
        if not isinstance(request.data, dict) or "monthly_tcu" not in request.data:
            return Response({"monthly_tcu": ["This field is required (null = no budget)."]}, status=400)
        try:
            return Response(
                caps.agent_budget_set(
                    tenant=self.tenant, actor=self.actor, agent=agent, monthly_tcu=request.data["monthly_tcu"]
                )
            )
        except ValidationError as exc:
            return _field_errors(exc)


class ManagedTierSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()
    description = serializers.CharField()
    popular = serializers.BooleanField()
    price_usd = serializers.CharField(help_text="Per agent per month.")
    included_tokens = serializers.IntegerField(help_text="Per agent per month.")
    overage_usd_per_mtok = serializers.CharField()


class ManagedReadSerializer(serializers.Serializer):
    agent = serializers.CharField(allow_null=True, help_text="null: the workspace's default agent.")
    tier = serializers.CharField(allow_null=True, help_text="null: managed LLM is off.")
    enabled_at = serializers.DateTimeField(allow_null=True)
    tiers = ManagedTierSerializer(many=True, help_text="The tiers on offer.")
    checkout_url = serializers.URLField(
        allow_null=True,
        required=False,
        help_text="Set when a card is needed: the tier applies once Stripe Checkout is paid.",
    )


class ManagedUpdateSerializer(serializers.Serializer):
    tier = serializers.CharField(
        allow_null=True, help_text="starter, pro or ultra; null turns managed LLM off."
    )


class _ManagedBase(TenantAPIView):
    """Managed LLM for one agent: which tier it is on, and turning it on, changing it or off (paid through Stripe
    before a tier applies)."""

    required_perms = {"GET": Perm.VIEW_USAGE, "PUT": Perm.MANAGE_CAPS}

    def _read(self, agent: Agent | None) -> Response:
        return Response(managed.managed_read(tenant=self.tenant, agent=agent))

    def _write(self, request: Request, agent: Agent | None) -> Response:
        data = request.data if isinstance(request.data, dict) else None
        if data is None or "tier" not in data:
            return Response({"tier": ["This field is required (null turns managed LLM off)."]}, status=400)
        if unknown := set(data) - {"tier"}:
            return Response({name: ["Unknown field."] for name in sorted(unknown)}, status=400)
        try:
            result = plans.managed_change(
                tenant=self.tenant, actor=self.actor, agent=agent, tier_slug=data["tier"]
            )
        except ValidationError as exc:
            return _field_errors(exc)
        except BillingError as exc:
            return _billing_error(exc)
        body = managed.managed_read(tenant=self.tenant, agent=agent)
        body["checkout_url"] = result.checkout_url
        return Response(body)


class AgentManagedView(_ManagedBase):
    """An agent's managed LLM tier; another tenant's agent is answered like a missing one (404)."""

    @extend_schema(responses=ManagedReadSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return self._read(access_agent(tenant=self.tenant, slug_or_id=slug))

    @extend_schema(request=ManagedUpdateSerializer, responses=ManagedReadSerializer)
    def put(self, request: Request, slug: str) -> Response:
        return self._write(request, access_agent(tenant=self.tenant, slug_or_id=slug))


class DefaultManagedView(_ManagedBase):
    """The workspace's default agent's managed LLM tier (calls made without an agent)."""

    @extend_schema(responses=ManagedReadSerializer)
    def get(self, request: Request) -> Response:
        return self._read(None)

    @extend_schema(request=ManagedUpdateSerializer, responses=ManagedReadSerializer)
    def put(self, request: Request) -> Response:
        return self._write(request, None)


class AlertWebhookView(TenantAPIView):
    """The optional alert webhook: `{"url": ...}`; the signing secret is returned once, when set."""

    required_perms = {"GET": Perm.MANAGE_CAPS, "PUT": Perm.MANAGE_CAPS}

    @extend_schema(
        responses=inline_serializer(
            "AlertWebhook", {"url": serializers.CharField(), "secret_masked": serializers.CharField()}
        )
    )
    def get(self, request: Request) -> Response:
        return Response(alerts.alert_webhook_read(tenant=self.tenant))

    @extend_schema(
        request=inline_serializer("AlertWebhookUpdate", {"url": serializers.CharField(allow_blank=True)}),
        responses=inline_serializer(
            "AlertWebhookSet", {"url": serializers.CharField(), "secret": serializers.CharField()}
        ),
    )
    def put(self, request: Request) -> Response:
        url = request.data.get("url", "") if isinstance(request.data, dict) else ""
        if not isinstance(url, str):
            return Response({"url": ["Enter a URL or an empty string."]}, status=400)
        try:
            return Response(alerts.alert_webhook_set(tenant=self.tenant, actor=self.actor, url=url))
        except ValidationError as exc:
            return _field_errors(exc)


def _user(request: Request) -> User | None:
    """The logged-in user; None when an API key acts (it sees only tenant-wide notifications)."""
    user = request.user
    return user if isinstance(user, User) else None


class NotificationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Notification
        fields = ["id", "level", "title", "body", "read_at", "created_at"]
        read_only_fields = fields


class NotificationListView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_USAGE}

    @extend_schema(responses=NotificationSerializer(many=True))
    def get(self, request: Request) -> Response:
        items = notifications.notifications_for(
            _user(request), self.tenant, unread_only=request.query_params.get("unread") in {"1", "true"}
        )
        return Response(NotificationSerializer(items, many=True).data)


class NotificationDetailView(TenantAPIView):
    required_perms = {"GET": Perm.VIEW_USAGE, "POST": Perm.VIEW_USAGE}

    @extend_schema(responses=NotificationSerializer)
    def get(self, request: Request, notification_id: int) -> Response:
        items = notifications.notifications_for(_user(request), self.tenant, limit=1000)
        for item in items:
            if item.pk == int(notification_id):
                return Response(NotificationSerializer(item).data)
        return Response({"detail": "No such notification."}, status=404)

    @extend_schema(request=None, responses=NotificationSerializer)
    def post(self, request: Request, notification_id: int) -> Response:
        """Mark the notification read."""
        item = notifications.notification_mark_read(
            tenant=self.tenant, user=_user(request), notification_id=notification_id
        )
        return Response(NotificationSerializer(item).data)
