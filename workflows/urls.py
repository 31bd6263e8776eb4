from django.urls import path

from . import views

app_name = "workflows"

# Nothing else lives under instances/: every name there is an instance id ("new" and
# "bulk" are valid ids), so the start page and the bulk action have paths of their own.
urlpatterns = [
    path("", views.instance_list, name="instance_list"),
    path("start/", views.instance_create, name="instance_create"),
    path("bulk/", views.bulk_action, name="bulk_action"),
    path("bulk/all/", views.bulk_all, name="bulk_all"),
    path("instances/<str:instance_id>/", views.instance_detail, name="instance_detail"),
    path("instances/<str:instance_id>/events/", views.send_event, name="send_event"),
    path("instances/<str:instance_id>/delete/", views.instance_delete, name="instance_delete"),
    path("instances/<str:instance_id>/<str:action>/", views.instance_action, name="instance_action"),
    path("workflows/", views.workflow_list, name="workflow_list"),
    path("schedules/", views.schedule_action, name="schedule_action"),
    path("tokens/", views.token_list, name="token_list"),
    path("tokens/revoke/", views.token_revoke, name="token_revoke"),
    path("metrics", views.metrics_view, name="metrics"),
]
