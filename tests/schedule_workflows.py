"""A scheduled workflow for the real-cluster schedule test: its clusters import this
module (TEST_WORKFLOW_MODULES), so no other test's cluster starts it."""

from workflows import workflow


@workflow("schedule-test-every-minute", schedule="* * * * *")
def every_minute(event, step):
    return step.do("note the time", lambda: event.payload["scheduled_at"])
