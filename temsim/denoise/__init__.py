"""temsim.denoise: CNN denoisers for TEM images: training, tiled inference, metrics.

- models: `DnCNN`, `UNet` (Flax NNX; residual; optional bias-free layers and
  `impulse_features` input channels marking pixels at the image's extremes).
- tiling: `denoise_image` (whole image, or overlapping tiles blended seamlessly).
- metrics: `psnr`, `ssim`, `ms_ssim`, `seam_score`; shape: atom-column `fidelity`.
- train: `fit` (pure jitted step, data-parallel, orbax checkpoints, resumable).
- pretrained: `load_pretrained("blind")`, the shipped blind U-Net (offline).
- vst: `denoise_poisson` (known dose, Anscombe transform and unbiased inverse).
- sure: `denoise_known` (known noise type and level: the CNN refined by SURE-LET).
"""

from temsim.denoise.metrics import ms_ssim, psnr, seam_score, ssim
from temsim.denoise.models import DnCNN, UNet, impulse_features
from temsim.denoise.pretrained import load_pretrained
from temsim.denoise.shape import fidelity as shape_fidelity
from temsim.denoise.sure import denoise_known
from temsim.denoise.tiling import denoise_image
from temsim.denoise.train import TrainConfig, fit
from temsim.denoise.vst import denoise_poisson

__all__ = [
    "DnCNN",
    "TrainConfig",
    "UNet",
    "denoise_image",
    "denoise_known",
    "denoise_poisson",
    "fit",
    "impulse_features",
    "load_pretrained",
    "ms_ssim",
    "psnr",
    "seam_score",
    "shape_fidelity",
    "ssim",
]
