"""vlbench-example-plugin: a non-timm vision encoder (tiny_cnn) and a task (caption_choice)."""

__version__ = "0.1.0"
