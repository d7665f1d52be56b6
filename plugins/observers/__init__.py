"""Built-in observers: vlbench_run_finished implementations."""
