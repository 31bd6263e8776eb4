from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("approvals/", include("approvals.urls")),
    path("api/v1/", include("workflows.api.urls")),
    path("hooks/", include("workflows.ingress.urls")),
    path("", include("workflows.urls")),
]
