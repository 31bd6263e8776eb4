"""`POST /hooks/<name>`: a signed webhook delivery (api.md section 11). Thin: the checks
and the transaction are in webhooks.receive."""

from __future__ import annotations

import logging

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from ..api.errors import error_response
from ..errors import PayloadTooLarge
from ..names import shown
from .actions import DeliveryRefused
from .body import MalformedBody, check_size
from .webhooks import InvalidSignature, WebhookNotConfigured, WebhookNotFound, receive

logger = logging.getLogger(__name__)


@csrf_exempt  # signed by the sender instead
def hook(request: HttpRequest, name: str) -> JsonResponse:
    if request.method != "POST":
        return error_response(405, "MethodNotAllowed", "webhooks take POST only", headers={"Allow": "POST"})
    if "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower() and not request.META.get(
        "CONTENT_LENGTH"
    ):
        # Django reads Content-Length bytes of a body: a chunked one would arrive empty.
        return error_response(
            411, "LengthRequired", "send the body with a Content-Length header, not in chunks"
        )
    announced = request.headers.get("Content-Length") or "0"
    if not (announced.isascii() and announced.isdigit()):  # "²" is a digit to str.isdigit
        return error_response(400, "BadRequest", f"the Content-Length header is not a number: {announced!r}")
    try:
        # Refuse a body announced too large before reading it.
        check_size(int(announced))
        outcome = receive(name, raw_body=request.body, headers=request.headers)
    except WebhookNotFound:
        # Not the list of the hooks there are: the caller is not authenticated.
        return error_response(404, "WebhookNotFound", f"no webhook named {shown(name)}")
    except (PayloadTooLarge, RequestDataTooBig) as exc:
        return error_response(413, "PayloadTooLarge", str(exc))
    except InvalidSignature as exc:
        logger.warning('webhook "%s": refused a delivery: %s', name, exc)
        return error_response(401, "InvalidSignature", str(exc))
    except WebhookNotConfigured as exc:
        logger.error("%s", exc)
        # 503: the sender retries, and succeeds once the secret is set. (Which setting
        # is missing is for the log, not for an unauthenticated caller.)
        return error_response(
            503, "WebhookNotConfigured", f"webhook {shown(name)} is not configured yet: try again later"
        )
    except MalformedBody as exc:
        return error_response(400, "MalformedJSON", str(exc))
    except DeliveryRefused as exc:
        logger.info('webhook "%s": refused a delivery: %s', name, exc)
        return error_response(422, exc.error_type, exc.message)
    except Exception:
        # A bug in the handler or the database gone: nothing was applied; the sender
        # retries (its providers do on a 5xx) and the traceback is in the log.
        logger.exception('webhook "%s": the handler failed', name)
        return error_response(
            503, "HandlerError", f'webhook "{name}" failed to handle the delivery; it may be retried'
        )
    logger.info(
        'webhook "%s": applied %d action(s)%s', name, outcome.applied, " (a repeat)" * outcome.duplicate
    )
    answer = {"applied": outcome.applied}
    if outcome.duplicate:
        answer["duplicate"] = True
    return JsonResponse(answer)


@csrf_exempt
def no_hook(request: HttpRequest) -> JsonResponse:
    return error_response(404, "WebhookNotFound", "webhooks are at /hooks/<name>, with no trailing slash")
