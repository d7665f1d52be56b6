"""Built-in vlbench plugins."""
