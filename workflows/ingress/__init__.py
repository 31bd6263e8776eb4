"""External events in: signed webhooks (api.md section 11) and message-queue consumers
(section 12). A handler turns what came in into actions (`SendEvent`, `Create`), which
`actions.apply_actions` applies in one transaction together with the record of the
delivery, so a delivery repeated by its sender acts once."""
