"""Tools around the worker: embedded broker, admin, CLI, demo, audit, bench."""
