"""Generators: pure callables ``z [d] -> image [H, W, C]`` in [0, 1], and the Flax modules behind them."""

from .dcgan import DCGANGenerator as DCGANGenerator
from .dcgan import FaceDCGAN as FaceDCGAN
from .dcgan import convert_dcgan_state_dict as convert_dcgan_state_dict
from .dcgan import face_dcgan as face_dcgan
from .torch_zip import load_torch_zip as load_torch_zip

__all__: list[str] = []
__all__ += [
    "DCGANGenerator",
    "FaceDCGAN",
    "convert_dcgan_state_dict",
    "face_dcgan",
    "load_torch_zip",
]
