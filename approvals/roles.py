"""The Approvers group: people who may use the approvals inbox.

Created after every migrate, like the console's Viewers and Operators. Being in the
group opens the inbox; which requests a person may decide is up to each request's
approvers ("user:NAME", "group:NAME"), and superusers may decide any.
"""

from typing import Any

from django.contrib.auth.models import Group, Permission

APPROVERS = "Approvers"
DECIDE_PERMISSION = "approvals.decide_approvalrequest"


def ensure_approvers_group(**kwargs: Any) -> None:
    group, _ = Group.objects.get_or_create(name=APPROVERS)
    group.permissions.add(
        *Permission.objects.filter(content_type__app_label="approvals", codename="decide_approvalrequest")
    )
