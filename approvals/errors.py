"""The exceptions of the approvals API. Pure Python: safe to import anywhere.

A user who may not decide a request gets django.core.exceptions.PermissionDenied;
bad input (an unknown request id, a malformed argument) is a ValueError.
"""


class DecisionRefused(Exception):
    """The request can no longer be decided; nothing was changed."""


class AlreadyDecided(DecisionRefused):
    """The request was approved or rejected before: a request is decided once."""


class RequestExpired(DecisionRefused):
    """The request's deadline has passed; the workflow goes on without a decision."""


class RequestCancelled(DecisionRefused):
    """The workflow instance no longer waits for the decision (terminated, errored or complete)."""
