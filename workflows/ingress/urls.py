from django.urls import path

from . import views

app_name = "hooks"

# Mount under any prefix: path("hooks/", include("workflows.ingress.urls")).
urlpatterns = [path("<str:name>", views.hook, name="hook")]
