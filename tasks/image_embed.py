"""Embed every image under an input folder, in batches on one device; no weights to download.

    dispatch tasks/image_embed.py ImageEmbed --backbone torch --device cpu \
        --mixin input=tasks/data/images output=out/embeddings

Images are decoded and resized in DataLoader workers (`load_data`), computed on the device
in batches (`inference`: a fixed, seeded random projection, and a 64-bit perceptual hash
from the low frequencies of a DCT), and written one `.json` per image in
`postprocess_each`, which the torch backbone overlaps with the next batch's compute.
`--backbone serial` runs all of it in one process (cpu unless `--device` says otherwise),
for debugging with `breakpoint()`.
The same command runs on `--device cuda` or `--device npu` where present; results are
the same up to floating-point rounding.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING

from dispatcher import Placeholder, TorchTask
from templates import InputByExtensions, OutputWithExtension, torch_task

if TYPE_CHECKING:  # imported where used, so `-h` on this file stays quick
    import numpy as np
    import torch

HASH_SIDE = 32  # the pHash works on a 32x32 grayscale image ...
HASH_LOW = 8  # ... and keeps its 8x8 lowest frequencies: 64 bits


def decode_rgb(path: str) -> np.ndarray:
    """An image file as an RGB uint8 array (H, W, 3), with Pillow if installed, else PyAV."""
    import numpy as np

    try:
        from PIL import Image
    except ImportError:
        Image = None
    if Image is not None:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    import av

    with av.open(path) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def dct_matrix(n: int) -> torch.Tensor:
    """The orthonormal DCT-II matrix: `D @ x` transforms the columns of x."""
    import torch

    k = torch.arange(n, dtype=torch.float64)[:, None]
    i = torch.arange(n, dtype=torch.float64)[None, :]
    d = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.float()


def hash_hex(bits: torch.Tensor) -> str:
    """64 bits (row-major 8x8) as 16 hex digits."""
    value = 0
    for bit in bits.tolist():
        value = (value << 1) | int(bit)
    return f"{value:016x}"


@torch_task(
    input=Placeholder(str, help="folder of images (searched recursively)"),
    output=Placeholder(str, help="folder the .json results go to (one per image)"),
    input_mode=InputByExtensions(exts=[".png", ".jpg", ".jpeg", ".bmp", ".webp"]),
    output_mode=OutputWithExtension(ext=".json"),
    size=Placeholder(int, default=32, help="side the image is resized to before embedding"),
    dim=Placeholder(int, default=64, help="embedding dimensions"),
    seed=Placeholder(int, default=0, help="seed of the random projection (same seed, same space)"),
)
class ImageEmbed(TorchTask):
    """Writes OUTPUT/<image>.json: size, a 64-bit perceptual hash and a unit-length embedding."""

    # Images decode with Pillow where installed, else with PyAV: neither alone is required.
    requires = {"torch": "torch"}

    def validate(self) -> list[str]:
        problems = []
        if self.mixin.size < 8:
            problems.append(f"mixin 'size': expected at least 8, got {self.mixin.size}")
        if self.mixin.dim < 1:
            problems.append(f"mixin 'dim': expected a positive number, got {self.mixin.dim}")
        return problems + super().validate()

    def load_data(self, input: str) -> dict:
        import numpy as np
        import torch
        import torch.nn.functional as F

        rgb = decode_rgb(input)
        height, width = int(rgb.shape[0]), int(rgb.shape[1])
        # A copy: a decoded frame may be read-only, which torch warns about on every run.
        pixels = torch.from_numpy(np.array(rgb)).permute(2, 0, 1).float() / 255.0
        side = self.mixin.size
        pixels = F.interpolate(
            pixels[None], size=(side, side), mode="bilinear", antialias=True, align_corners=False
        )[0]
        return {"pixels": pixels, "width": width, "height": height}

    def load_model(self, device: torch.device) -> None:
        import torch

        side, dim = self.mixin.size, self.mixin.dim
        generator = torch.Generator().manual_seed(self.mixin.seed)
        projection = torch.randn(3 * side * side, dim, generator=generator) / math.sqrt(dim)
        self.projection = projection.to(device)
        self.dct = dct_matrix(HASH_SIDE).to(device)
        # ITU-R BT.601 luma weights, shaped to weigh the channels of (batch, 3, H, W).
        self.luma = torch.tensor([0.299, 0.587, 0.114], device=device)[:, None, None]

    def inference(self, device: torch.device, batch_size: int, pixels: torch.Tensor, **batch):
        import torch.nn.functional as F

        # `pixels` is already on the device: the backbone copies each batch there.
        flat = pixels.flatten(1)
        centred = flat - flat.mean(dim=1, keepdim=True)
        embedding = F.normalize(centred @ self.projection, dim=1)
        gray = (pixels * self.luma).sum(1)
        gray = F.interpolate(gray[:, None], size=(HASH_SIDE, HASH_SIDE), mode="area")[:, 0]
        low = (self.dct @ gray @ self.dct.T)[:, :HASH_LOW, :HASH_LOW].flatten(1)
        median = low[:, 1:].median(dim=1, keepdim=True).values  # the DC term would dominate
        return {"embedding": embedding, "phash": low > median}

    def postprocess_each(
        self, batch_idx, batch_size, input, output, embedding, phash, width, height, **row
    ) -> None:
        record = {
            "source": self.item_source().key_of({"input": input}),
            "width": int(width),
            "height": int(height),
            "phash": hash_hex(phash),
            "embedding": [round(v, 6) for v in embedding.tolist()],
        }
        with open(output, "w", encoding="utf-8") as fh:
            json.dump(record, fh)
            fh.write("\n")
