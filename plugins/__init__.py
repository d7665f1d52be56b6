"""Built-in vlbench plugins: each module is one plugin, declared in the `vlbench` entry-point group."""
