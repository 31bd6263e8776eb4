"""The console's roles, as Django groups: viewers see, operators act.

(Approvers are the approvals app's.) Created after every migrate, so a fresh
database has them; give people a role by adding them to the group.
"""

from typing import Any

from django.contrib.auth.models import Group, Permission

VIEWERS = "Viewers"
OPERATORS = "Operators"

VIEW_PERMISSION = "workflows.view_instance"
OPERATE_PERMISSION = "workflows.operate_instance"

_ROLE_PERMISSIONS = {
    VIEWERS: ["view_instance"],
    OPERATORS: ["view_instance", "operate_instance"],
}


def ensure_roles(**kwargs: Any) -> None:
    for group_name, codenames in _ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        group.permissions.add(
            *Permission.objects.filter(content_type__app_label="workflows", codename__in=codenames)
        )
