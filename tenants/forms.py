"""Django forms of the tenant pages; validation itself lives in the services (shared with the API)."""

from __future__ import annotations

from django import forms
from django.contrib.auth.forms import AuthenticationForm
from django.core.exceptions import ValidationError

from .allowlist import ALLOW_LIST_HELP, parse_allow_list
from .keys import GRACE_DEFAULT_SECONDS
from .models import Agent
from .roles import Role, invite_refusal
from .services import signup_errors, slug_suggestion
from .validators import MAX_TCU


def apply_errors(form: forms.Form, exc: ValidationError, rename: dict[str, str] | None = None) -> None:
    """Put a service's field errors next to the form's fields (unknown fields go to the top of the form)."""
    rename = rename or {}
    if hasattr(exc, "error_dict"):
        for field, messages in exc.message_dict.items():
            name = rename.get(field, field)
            for message in messages:
                form.add_error(name if name in form.fields else None, message)
    else:
        for message in exc.messages:
            form.add_error(None, message)


class WorkspaceForm(forms.Form):
    """A new workspace's name and id; the id is suggested from the name when left empty."""

    tenant_name = forms.CharField(label="Workspace name", max_length=150)
    tenant_slug = forms.CharField(
        label="Workspace id",
        max_length=50,
        required=False,
        help_text="Lowercase letters, digits and hyphens; used in URLs and the CLI. Suggested from the name.",
    )

    def clean_tenant_slug(self) -> str:
        slug = (self.cleaned_data.get("tenant_slug") or "").strip().lower()
        return slug or slug_suggestion(self.cleaned_data.get("tenant_name") or "")


class SignupForm(WorkspaceForm):
    name = forms.CharField(label="Your name", max_length=150, required=False)
    email = forms.EmailField(label="Work e-mail")
    password = forms.CharField(
        label="Password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 10 characters; not a common password.",
    )
    field_order = ["name", "email", "password", "tenant_name", "tenant_slug"]

    def add_service_errors(self) -> None:
        """After the form's own checks failed, the service's checks of the fields that passed them (a weak
        password, a taken e-mail or id), so every problem shows after one submit."""
        data = self.cleaned_data
        errors = signup_errors(
            email=data.get("email", ""),
            password=data.get("password", ""),
            name=data.get("name", ""),
            tenant_slug=data.get("tenant_slug", ""),
        )
        for field, messages in errors.items():
            if data.get(field) and field not in self.errors:
                for message in messages:
                    self.add_error(field, message)

    def ask_password_again(self) -> None:
        """A password is never sent back to the browser: after a failed submit, say it must be typed again."""
        note = "Enter your password again: it is not kept when the form has errors."
        field = self.fields["password"]
        field.help_text = f"{note} {field.help_text}"
        self["password"].help_text = field.help_text  # the bound field copied it when the form was checked


class LoginForm(AuthenticationForm):
    username = forms.EmailField(
        label="E-mail", widget=forms.EmailInput(attrs={"autofocus": True, "autocomplete": "email"})
    )


class InviteForm(forms.Form):
    email = forms.EmailField(label="E-mail")
    role = forms.ChoiceField(choices=Role.choices, initial=Role.MEMBER)

    def __init__(self, *args, inviter_role: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        # Offer only the roles this inviter may grant; the service refuses the others with the same rule.
        offered = [
            (v, label) for v, label in Role.choices if invite_refusal(actor_role=inviter_role, role=v) is None
        ]
        self.fields["role"].widget.choices = offered or Role.choices  # type: ignore[attr-defined]


class RoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class AcceptSignupForm(forms.Form):
    name = forms.CharField(label="Your name", max_length=150, required=False)
    password = forms.CharField(
        label="Choose a password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )


class AgentForm(forms.Form):
    slug = forms.CharField(
        label="Id", max_length=50, help_text="Lowercase letters, digits and hyphens, e.g. support-bot."
    )
    name = forms.CharField(max_length=150, required=False)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)


class AllowListField(forms.CharField):
    """Models and routes, comma- or newline-separated; cleaned to a list by the service's own parser."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(
            label="May call",
            required=False,
            widget=forms.Textarea(attrs={"rows": 2, "placeholder": "openai:*, route:support"}),
            help_text=ALLOW_LIST_HELP,
            **kwargs,  # type: ignore[arg-type]
        )

    def prepare_value(self, value: object) -> object:
        return "\n".join(value) if isinstance(value, (list, tuple)) else value

    def clean(self, value: object) -> list[str]:  # type: ignore[override]
        try:
            return parse_allow_list(super().clean(value))
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


class AgentEditForm(forms.Form):
    name = forms.CharField(max_length=150)
    description = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False)
    is_active = forms.BooleanField(label="Active", required=False)
    allowed_models = AllowListField()


KEY_LIMIT_HELP = (
    "Optional; calls with this key are refused (402) once its TCU this month reaches it, in every mode (your "
    "own keys too). 100,000 TCU = $1 of list cost."
)


class ApiKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    scopes = forms.MultipleChoiceField(
        choices=[
            ("gateway", "Gateway — call /v1 models"),
            ("manage", "Manage — use the /api configuration API"),
        ],
        widget=forms.CheckboxSelectMultiple,
        initial=["gateway"],
    )
    agent = forms.ModelChoiceField(
        queryset=Agent.objects.unscoped().none(),
        required=False,
        empty_label="No agent",
        help_text="Usage of this key is attributed to the agent, with its settings.",
    )
    expires_at = forms.DateField(
        label="Expires on",
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="Optional; the key stops working at the start of that day (UTC).",
    )
    spend_limit_tcu = forms.IntegerField(
        label="Monthly limit (TCU)",
        min_value=0,
        max_value=MAX_TCU,
        required=False,
        help_text=KEY_LIMIT_HELP,
    )
    allowed_models = AllowListField()

    def __init__(self, *args, tenant=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["agent"].queryset = Agent.objects.for_tenant(tenant)  # type: ignore[attr-defined]


class KeyLimitForm(forms.Form):
    """A key's monthly TCU limit, changed on the keys page (one small form per key)."""

    spend_limit_tcu = forms.IntegerField(
        label="Monthly limit (TCU)", min_value=0, max_value=MAX_TCU, required=False, help_text=KEY_LIMIT_HELP
    )


GRACE_CHOICES = [
    (0, "Stops now"),
    (3600, "1 hour"),
    (GRACE_DEFAULT_SECONDS, "24 hours"),
    (7 * 24 * 3600, "7 days"),
]


class KeyRotateForm(forms.Form):
    """A key's rotation on the keys page: how long the current secret keeps working."""

    grace_seconds = forms.TypedChoiceField(
        label="Current secret keeps working for",
        choices=GRACE_CHOICES,
        coerce=int,
        initial=GRACE_DEFAULT_SECONDS,
    )


class AuditFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        label="What",
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "e.g. key, agent, budget, role", "type": "search"}),
    )
    actor = forms.CharField(
        required=False, label="Who", max_length=254, widget=forms.TextInput(attrs={"placeholder": "e-mail"})
    )
    # Older links and scripts filter by action code prefix (`?action=apikey.`); still honoured, not shown.
    action = forms.CharField(required=False, max_length=64, widget=forms.HiddenInput)

    def clean(self):
        data = super().clean() or {}
        for name in ("q", "actor", "action"):
            if "\x00" in (data.get(name) or ""):
                self.add_error(name, "Null characters are not allowed.")
        return data
