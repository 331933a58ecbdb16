"""Stand-in for the aiges SDK (see `templates.adapters.aiges_sdk`): only what wrapper files import."""
