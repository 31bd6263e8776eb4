"""The console's forms: they parse and validate what people type, nothing more."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django import forms
from django.conf import settings
from django.http import QueryDict

from .api.tokens import MAX_TOKEN_NAME
from .definition import registered_workflows
from .errors import PayloadError
from .models import Action, Status
from .payloads import parse_json_text
from .selectors import InstanceFilters, decode_cursor

BULK_ACTIONS = [action for action in Action if action.in_bulk]


def _workflow_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in registered_workflows()]


class _JSONTextField(forms.CharField):
    """A textarea holding JSON; cleans to the parsed value, with the parser's message."""

    widget = forms.Textarea(attrs={"rows": 4, "spellcheck": "false"})

    def __init__(self, *, what: str, **kwargs: Any) -> None:
        self.what = what
        super().__init__(required=False, strip=True, **kwargs)

    def clean(self, value: Any) -> Any:
        text = super().clean(value)
        if not text:
            return None
        try:
            return parse_json_text(text, what=self.what)
        except PayloadError as exc:
            raise forms.ValidationError(str(exc)) from None


def _fits_in_utc(moment: datetime) -> bool:
    """Whether a query can be given `moment`: the database compares times in UTC, where
    year 1 at +14:00 or year 9999 at -14:00 falls outside the years a datetime holds."""
    try:
        moment.astimezone(UTC)
    except OverflowError:
        return False
    return True


class _DateTimeField(forms.DateTimeField):
    def to_python(self, value: Any) -> datetime | None:
        moment = super().to_python(value)
        if moment is not None and not _fits_in_utc(moment):
            raise forms.ValidationError("Enter a time between the years 1 and 9999 in UTC.")
        # In UTC: PostgreSQL refuses an offset beyond 15:59, which Python allows.
        return moment.astimezone(UTC) if moment is not None else None


class InstanceFilterForm(forms.Form):
    workflow = forms.ChoiceField(required=False)
    status = forms.ChoiceField(required=False, choices=[("", "any status"), *Status.choices])
    created_after = _DateTimeField(
        required=False,
        label=f"Created from ({settings.TIME_ZONE})",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    created_before = _DateTimeField(
        required=False,
        label=f"Created before ({settings.TIME_ZONE})",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}),
    )
    q = forms.CharField(
        required=False,
        max_length=200,
        label="Search",
        widget=forms.TextInput(attrs={"placeholder": "instance id or text in params", "type": "search"}),
    )
    after = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workflow"].choices = [("", "any workflow"), *_workflow_choices()]

    def clean_after(self) -> str:
        cursor = self.cleaned_data["after"]
        if cursor:
            try:
                moment, _ = decode_cursor(cursor)
            except ValueError:
                moment = None
            if moment is None or not _fits_in_utc(moment):
                raise forms.ValidationError("That page link is broken; start again from the newest.")
        return cursor

    def filters(self) -> InstanceFilters:
        data = self.cleaned_data
        return InstanceFilters(
            workflow=data["workflow"],
            status=data["status"],
            created_after=data["created_after"],
            created_before=data["created_before"],
            search=data["q"].strip(),
        )


class SendEventForm(forms.Form):
    type = forms.CharField(max_length=200, label="Event type")
    payload = _JSONTextField(what="the payload", label="Payload (JSON, optional)")


class CreateInstanceForm(forms.Form):
    workflow = forms.ChoiceField()
    params = _JSONTextField(what="the params", label="Params (JSON, optional)")
    instance_id = forms.CharField(
        required=False, max_length=100, label="Instance id (optional: one is generated)"
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["workflow"].choices = _workflow_choices()


class _IdListField(forms.Field):
    """Instance ids from checkboxes; the services say which do not exist."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        return [item for item in (value or []) if item]


class BulkActionForm(forms.Form):
    action = forms.ChoiceField(choices=[(action.value, action.label) for action in BULK_ACTIONS])
    ids = _IdListField(error_messages={"required": "Select at least one instance."})


class CreateTokenForm(forms.Form):
    name = forms.CharField(
        required=False,
        max_length=MAX_TOKEN_NAME,
        label="Name (optional: what uses it, e.g. billing-cron)",
    )


class BulkFilterForm(forms.Form):
    """A bulk action on everything a filter of the instances list matches, batch by batch:
    the filter travels as the list's query string; the counts carry the progress so far."""

    action = forms.ChoiceField(choices=[(action.value, action.label) for action in BULK_ACTIONS])
    query = forms.CharField(required=False, max_length=2000)
    after = forms.CharField(required=False)
    total = forms.IntegerField(required=False, min_value=0)
    done = forms.IntegerField(required=False, min_value=0)
    refused = forms.IntegerField(required=False, min_value=0)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        self.filter_form = InstanceFilterForm(QueryDict(data.get("query") or ""))
        if not self.filter_form.is_valid():
            raise forms.ValidationError("The filter is not valid: correct it in the list first.")
        if data.get("after"):
            try:
                decode_cursor(data["after"])
            except ValueError:
                raise forms.ValidationError(
                    "The batch cursor is broken: start the bulk action again."
                ) from None
        return data

    def filters(self) -> InstanceFilters:
        return self.filter_form.filters()
