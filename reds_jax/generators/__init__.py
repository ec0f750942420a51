"""Generators: pure callables ``z [d] -> image [H, W, C]`` in [0, 1], and the Flax modules behind them."""

from reds_jax.formats.torch_zip import load_torch_pickle as load_torch_pickle
from reds_jax.formats.torch_zip import load_torch_zip as load_torch_zip
from reds_jax.generators.dcgan import DCGANGenerator as DCGANGenerator
from reds_jax.generators.dcgan import FaceDCGAN as FaceDCGAN
from reds_jax.generators.dcgan import convert_dcgan_state_dict as convert_dcgan_state_dict
from reds_jax.generators.dcgan import face_dcgan as face_dcgan
from reds_jax.generators.rooms import FACTOR_NAMES as FACTOR_NAMES
from reds_jax.generators.rooms import FACTOR_RANGES as FACTOR_RANGES
from reds_jax.generators.rooms import MASK_NAMES as MASK_NAMES
from reds_jax.generators.rooms import NUM_FACTORS as NUM_FACTORS
from reds_jax.generators.rooms import RoomScene as RoomScene
from reds_jax.generators.rooms import factors_to_unit as factors_to_unit
from reds_jax.generators.rooms import render as render
from reds_jax.generators.rooms import render_masks as render_masks
from reds_jax.generators.rooms import render_scene as render_scene
from reds_jax.generators.rooms import sample_dataset as sample_dataset
from reds_jax.generators.rooms import unit_to_factors as unit_to_factors
from reds_jax.generators.rooms_gan import RoomsGAN as RoomsGAN
from reds_jax.generators.rooms_gan import RoomsGANGenerator as RoomsGANGenerator
from reds_jax.generators.rooms_gan import rooms_gan as rooms_gan
from reds_jax.generators.rooms_oracle import OracleParams as OracleParams
from reds_jax.generators.rooms_oracle import RoomsOracle as RoomsOracle
from reds_jax.generators.rooms_oracle import rooms_oracle as rooms_oracle
from reds_jax.generators.stylegan2 import StyleGAN2Checkpoint as StyleGAN2Checkpoint
from reds_jax.generators.stylegan2 import StyleGAN2Generator as StyleGAN2Generator
from reds_jax.generators.stylegan2 import stylegan2 as stylegan2
from reds_jax.generators.stylegan2_convert import convert_stylegan2 as convert_stylegan2
from reds_jax.generators.stylegan2_nets import StyleGAN2 as StyleGAN2
from reds_jax.generators.stylegan2_nets import StyleGAN2Config as StyleGAN2Config

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
