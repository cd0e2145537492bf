from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from monitoring import tokens
from monitoring.models import ApiToken

_STATE_COLOURS = {"active": "#1b7f3b", "expired": "#8a6d00", "revoked": "#b00020"}
_STATE_WORDS = {"active": _("active"), "expired": _("expired"), "revoked": _("revoked")}


class ApiTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        label=_("scopes"),
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        initial=[ApiToken.Scope.PUSH],
        help_text=_("What the token may do. push: send samples to POST /api/v1/metrics."),
    )

    class Meta:
        model = ApiToken
        fields = ("name", "scopes", "rate_limit_per_minute", "expires_at")

    def clean_scopes(self) -> list[str]:
        try:
            return tokens.clean_scopes(self.cleaned_data.get("scopes") or [])
        except tokens.TokenError as error:
            raise forms.ValidationError(str(error)) from None


class StateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, Any]]:
        return list(_STATE_WORDS.items())

    def queryset(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> QuerySet[ApiToken]:
        now = timezone.now()
        expired = Q(expires_at__isnull=False, expires_at__lte=now)
        if self.value() == "active":
            return queryset.filter(revoked_at__isnull=True).exclude(expired)
        if self.value() == "expired":
            return queryset.filter(expired, revoked_at__isnull=True)
        if self.value() == "revoked":
            return queryset.filter(revoked_at__isnull=False)
        return queryset


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """API tokens: created here or by ``create_token``; shown once, stored hashed, revocable."""

    form = ApiTokenForm
    list_display = (
        "name", "shown_prefix", "shown_scopes", "rate_limit_per_minute", "created_at", "last_used_at", "expires_at",
        "state",
    )
    list_filter = (StateFilter,)
    search_fields = ("name", "prefix")
    ordering = ("name",)
    actions = ("revoke_tokens",)
    readonly_fields = ("shown_prefix", "created_at", "last_used_at", "revoked_at")

    def get_fieldsets(self, request: HttpRequest, obj: ApiToken | None = None) -> Any:
        fieldsets: list[tuple[Any, dict[str, Any]]] = [
            (None, {
                "fields": ("name", "scopes"),
                "description": _(
                    "The token is shown once, in a message after you save; only its hash is stored. "
                    "Lost it? Revoke this one and create another."
                ),
            }),
            (_("Limits"), {
                "fields": ("rate_limit_per_minute", "expires_at"),
                "description": _("0 requests per minute means no limit. No expiry date: the token never expires."),
            }),
        ]
        if obj is not None:
            fieldsets.append((_("Use"), {
                "fields": ("shown_prefix", "created_at", "last_used_at", "revoked_at"),
                "description": _("“Last used” is updated at most once a minute."),
            }))
        return fieldsets

    @admin.display(description=_("prefix"), ordering="prefix")
    def shown_prefix(self, obj: ApiToken) -> str:
        return format_html("<code>{}…</code>", obj.prefix) if obj.prefix else "—"

    @admin.display(description=_("scopes"))
    def shown_scopes(self, obj: ApiToken) -> str:
        return ", ".join(obj.scopes or []) or "—"

    @admin.display(description=_("state"))
    def state(self, obj: ApiToken) -> str:
        current = tokens.state(obj)
        return format_html('<strong style="color:{}">{}</strong>', _STATE_COLOURS[current], _STATE_WORDS[current])

    def save_model(self, request: HttpRequest, obj: ApiToken, form: forms.ModelForm, change: bool) -> None:
        plaintext = None if change else tokens.issue(obj)
        super().save_model(request, obj, form, change)
        if plaintext is not None:
            self.message_user(
                request,
                format_html(
                    "Token for “{}”: <code>{}</code> — copy it now, it is not shown again.", obj.name, plaintext
                ),
                messages.WARNING,
            )

    @admin.action(description=_("Revoke selected tokens"), permissions=["change"])
    def revoke_tokens(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        revoked = sum(tokens.revoke(token) for token in queryset.filter(revoked_at__isnull=True))
        self.message_user(
            request,
            ngettext("Revoked %d token.", "Revoked %d tokens.", revoked) % revoked
            + (" " + str(_("The others were already revoked.")) if revoked < queryset.count() else ""),
            messages.SUCCESS,
        )
