"""The project package has no tables of its own yet; the module lets post_migrate reach it."""
