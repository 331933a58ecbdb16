"""Configuration: the three layers (`--cfg` < `--mixin-cfg` < `--mixin`) over a task's placeholders."""
