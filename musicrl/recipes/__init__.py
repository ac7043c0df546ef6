"""Training recipes: one file per method, each with ``Config`` and ``main(cfg)``."""
