from django.urls import path, re_path

from . import views

app_name = "hooks"

# Mount under any prefix: path("hooks/", include("workflows.ingress.urls")).
urlpatterns = [
    path("<str:name>", views.hook, name="hook"),
    # Any other path under the prefix (empty, a trailing slash, a sub-path): a JSON 404,
    # as a sender expects, not the site's page.
    re_path(r"^.*$", views.no_hook),
]
