"""Generators: pure callables ``z [d] -> image [H, W, C]`` in [0, 1], and the Flax modules behind them."""

from .dcgan import DCGANGenerator as DCGANGenerator
from .dcgan import FaceDCGAN as FaceDCGAN
from .dcgan import convert_dcgan_state_dict as convert_dcgan_state_dict
from .dcgan import face_dcgan as face_dcgan
from .rooms import FACTOR_NAMES as FACTOR_NAMES
from .rooms import FACTOR_RANGES as FACTOR_RANGES
from .rooms import MASK_NAMES as MASK_NAMES
from .rooms import NUM_FACTORS as NUM_FACTORS
from .rooms import RoomScene as RoomScene
from .rooms import factors_to_unit as factors_to_unit
from .rooms import render as render
from .rooms import render_masks as render_masks
from .rooms import render_scene as render_scene
from .rooms import sample_dataset as sample_dataset
from .rooms import unit_to_factors as unit_to_factors
from .rooms_gan import RoomsGAN as RoomsGAN
from .rooms_gan import RoomsGANGenerator as RoomsGANGenerator
from .rooms_gan import rooms_gan as rooms_gan
from .rooms_oracle import OracleParams as OracleParams
from .rooms_oracle import RoomsOracle as RoomsOracle
from .rooms_oracle import rooms_oracle as rooms_oracle
from .stylegan2 import StyleGAN2Checkpoint as StyleGAN2Checkpoint
from .stylegan2 import StyleGAN2Generator as StyleGAN2Generator
from .stylegan2 import stylegan2 as stylegan2
from .stylegan2_convert import convert_stylegan2 as convert_stylegan2
from .stylegan2_nets import StyleGAN2 as StyleGAN2
from .stylegan2_nets import StyleGAN2Config as StyleGAN2Config
from .torch_zip import load_torch_pickle as load_torch_pickle
from .torch_zip import load_torch_zip as load_torch_zip

__all__: list[str] = []
__all__ += [
    "DCGANGenerator",
    "FaceDCGAN",
    "convert_dcgan_state_dict",
    "face_dcgan",
    "load_torch_zip",
]
__all__ += [
    "FACTOR_NAMES",
    "FACTOR_RANGES",
    "MASK_NAMES",
    "NUM_FACTORS",
    "OracleParams",
    "RoomScene",
    "RoomsOracle",
    "factors_to_unit",
    "render",
    "render_masks",
    "render_scene",
    "rooms_oracle",
    "sample_dataset",
    "unit_to_factors",
]
__all__ += ["RoomsGAN", "RoomsGANGenerator", "rooms_gan"]
__all__ += [
    "StyleGAN2",
    "StyleGAN2Checkpoint",
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "convert_stylegan2",
    "load_torch_pickle",
    "stylegan2",
]
