"""tiny_cnn: a two-layer convolutional vision encoder for vlbench (no timm involved)."""

from __future__ import annotations

import torch
from torch import nn

from vlbench import hookimpl
from vlbench.types import EncoderOutput, Register, VisionEncoder, VisionEncoderSpec, VisionInfo


class TinyCNN(VisionEncoder):
    def __init__(self, image_size: tuple[int, int], pretrained: bool = False, weights: str | None = None, width: int = 32):
        super().__init__()
        if pretrained:
            raise ValueError("tiny_cnn has no pretrained weights: use pretrained = false")
        self.body = nn.Sequential(nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Conv2d(width, width, 3, 2, 1), nn.ReLU())
        h, w = image_size
        grid = (-(-h // 4), -(-w // 4))  # two stride-2 convolutions: ceil(side / 4)
        self.info = VisionInfo(token_dim=width, pooled_dim=width, input_size=(h, w),
                               mean=(0.5,) * 3, std=(0.5,) * 3, grid_size=grid)
        if weights:
            self.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))

    def forward(self, images: torch.Tensor) -> EncoderOutput:
        tokens = self.body(images).flatten(2).transpose(1, 2)  # [B, C, h, w] -> [B, h*w, C], row-major
        return EncoderOutput(tokens=tokens, pooled=tokens.mean(1))


@hookimpl
def vlbench_register_vision_encoders(register: Register) -> None:
    register(VisionEncoderSpec(name="tiny_cnn", factory=TinyCNN, description="Two stride-2 convolutions (example plugin)",
                               options={"width": 32}, default_image_size=(64, 32), family="TinyCNN"))
