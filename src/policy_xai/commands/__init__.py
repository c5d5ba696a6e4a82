"""Subcommands of the `policy-xai` command line (see policy_xai.cli)."""
