from django.urls import path

from . import views

app_name = "workflows"

urlpatterns = [
    path("", views.instance_list, name="instance_list"),
    path("instances/new/", views.instance_create, name="instance_create"),
    path("instances/bulk/", views.bulk_action, name="bulk_action"),
    path("instances/<str:instance_id>/", views.instance_detail, name="instance_detail"),
    path("instances/<str:instance_id>/events/", views.send_event, name="send_event"),
    path("instances/<str:instance_id>/<str:action>/", views.instance_action, name="instance_action"),
    path("workflows/", views.workflow_list, name="workflow_list"),
]
