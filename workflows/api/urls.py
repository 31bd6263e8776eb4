"""The HTTP API's routes: `path("api/v1/", include("workflows.api.urls"))`."""

from django.urls import path, re_path

from . import views

app_name = "workflows_api"

urlpatterns = [
    path("workflows", views.workflow_list, name="workflow_list"),
    # A workflow name may hold any character, "/" included (sent percent-encoded).
    path("workflows/<path:name>/instances", views.instance_create, name="instance_create"),
    path("instances", views.instance_list, name="instance_list"),
    path("instances/<str:instance_id>", views.instance_detail, name="instance_detail"),
    path("instances/<str:instance_id>/events", views.instance_events, name="instance_events"),
    path("instances/<str:instance_id>/<str:action>", views.instance_action, name="instance_action"),
    path("openapi.json", views.openapi, name="openapi"),
    # Last: anything else under the API is a JSON 404, never the site's HTML page.
    re_path(r"^(?P<path>.*)$", views.not_found, name="not_found"),
]
