"""Human approvals: a workflow asks, a person decides in the inbox, the workflow goes on."""
