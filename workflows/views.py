"""The operator console (placeholder views; the dashboard issue fills them in)."""

from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from .roles import VIEW_PERMISSION


@login_required
@permission_required(VIEW_PERMISSION, raise_exception=True)
def instance_list(request: HttpRequest) -> HttpResponse:
    return render(request, "workflows/instance_list.html", {"nav": "instances"})


instance_create = bulk_action = instance_detail = send_event = instance_action = instance_list
workflow_list = instance_list
