"""History checkers: pure functions of a history and the test's parameters (see compose.check_all)."""
