"""The keys a suite file may hold outside its axes, each with its default and help (docs/suites.md
lists them; tests/test_meta.py checks that it does). Types come from the defaults."""

from __future__ import annotations

from typing import Any

# key -> (default, help).
SUITE_KEYS: dict[str, tuple[Any, str]] = {
    "name": ("", "the suite's name; results go to <results-dir>/<name>/"),
    "description": ("", "free text"),
    "seed": (0, "seed of every run (ignored when seeds is given)"),
    "seeds": ([], "several seeds: each run is repeated once per seed"),
    "data_seed": (0, "seed of dataset generation and splits, shared by every run"),
    "device": ("auto", '"auto" (cuda when available), "cpu" or "cuda"'),
}
TRAIN_KEYS: dict[str, tuple[Any, str]] = {
    "epochs": (10, "passes over the train split"),
    "batch_size": (64, "training batch size"),
    "lr": (3e-4, "peak learning rate of the new modules (fusion, heads)"),
    "encoder_lr": (-1.0, "peak learning rate of the encoders; -1 = same as lr"),
    "weight_decay": (0.05, "AdamW weight decay of the new modules"),
    "encoder_weight_decay": (-1.0, "AdamW weight decay of the encoders; -1 = same as weight_decay"),
    "warmup_fraction": (0.1, "linear warm-up over this fraction of all steps, then cosine to 0"),
    "grad_clip": (1.0, "max global grad norm; 0 = off"),
    "amp": ("auto", '"auto" (bf16 on GPU, off on CPU), "bf16", "fp16" or "off"'),
    "channels_last": (False, "images in channels_last memory format"),
    "hflip": (True, "random horizontal flip of train images; always off for a dataset that declares flips unsafe"),
    "early_stopping_patience": (0, "stop after this many epochs without val improvement; 0 = off"),
    "max_steps_per_epoch": (0, "cap on steps per epoch; 0 = the whole train split"),
    "eval_batch_size": (128, "batch size for encoding val/test splits"),
    "eval_train_split": (
        False,
        "also score the selected checkpoint on the train split (no augmentation), e.g. for a train-vs-val gap",
    ),
    "num_workers": (0, "DataLoader worker processes"),
    "cost_batch_sizes": ([1, 32], "batch sizes of the throughput measurement (images/s)"),
    "cost_budget_s": (1.0, "seconds of timing per latency/throughput figure, after warm-up"),
}
# Names users carry over from other tools, for "did you mean" where spelling is no help.
ALIASES = {
    "learning_rate": "lr",
    "wd": "weight_decay",
    "bs": "batch_size",
    "batch": "batch_size",
    "epoch": "epochs",
    "img_size": "image_size",
    "input_size": "image_size",
    "dataset_name": "dataset",
}
TOP_LEVEL = {
    "suite",
    "train",
    "defaults",
    "executor",
}  # and every kind's axis (PluginHost.kinds); executor: read by vlbench.executors
