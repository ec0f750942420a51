"""Generators: pure callables ``z [d] -> image [H, W, C]`` in [0, 1], and the Flax modules behind them."""

import importlib as _importlib
import sys as _sys
import types as _types

# Public name -> defining module, imported on first use (PEP 562): importing one generator module
# (or a jax-free one such as ``stylegan2_convert_args``) does not load every generator.
_EXPORTS = {
    "DCGANGenerator": "reds_jax.generators.dcgan",
    "FACTOR_NAMES": "reds_jax.generators.rooms",
    "FLOW_METHODS": "reds_jax.generators.flow",
    "FACTOR_RANGES": "reds_jax.generators.rooms",
    "FaceDCGAN": "reds_jax.generators.dcgan",
    "MASK_NAMES": "reds_jax.generators.rooms",
    "NUM_FACTORS": "reds_jax.generators.rooms",
    "OracleParams": "reds_jax.generators.rooms_oracle",
    "RoomScene": "reds_jax.generators.rooms",
    "RoomsFlow": "reds_jax.generators.rooms_flow",
    "RoomsGAN": "reds_jax.generators.rooms_gan",
    "RoomsGANGenerator": "reds_jax.generators.rooms_gan",
    "RoomsOracle": "reds_jax.generators.rooms_oracle",
    "RoomsVelocityUNet": "reds_jax.generators.rooms_flow",
    "StyleGAN2": "reds_jax.generators.stylegan2_nets",
    "StyleGAN2Checkpoint": "reds_jax.generators.stylegan2",
    "StyleGAN2Config": "reds_jax.generators.stylegan2_nets",
    "StyleGAN2Generator": "reds_jax.generators.stylegan2",
    "convert_dcgan_state_dict": "reds_jax.generators.dcgan",
    "convert_stylegan2": "reds_jax.generators.stylegan2_convert",
    "epsilon_to_velocity": "reds_jax.generators.flow",
    "face_dcgan": "reds_jax.generators.dcgan",
    "factors_to_unit": "reds_jax.generators.rooms",
    "flow": "reds_jax.generators.flow",
    "load_torch_pickle": "reds_jax.formats.torch_zip",
    "load_torch_zip": "reds_jax.formats.torch_zip",
    "render": "reds_jax.generators.rooms",
    "render_masks": "reds_jax.generators.rooms",
    "render_scene": "reds_jax.generators.rooms",
    "rooms_flow": "reds_jax.generators.rooms_flow",
    "rooms_gan": "reds_jax.generators.rooms_gan",
    "rooms_oracle": "reds_jax.generators.rooms_oracle",
    "sample_dataset": "reds_jax.generators.rooms",
    "stylegan2": "reds_jax.generators.stylegan2",
    "unit_to_factors": "reds_jax.generators.rooms",
}


class _Package(_types.ModuleType):
    """Keeps the functions ``rooms_oracle``, ``rooms_gan``, ``rooms_flow``, ``stylegan2`` and ``flow`` (public names that are
    also submodules) when their submodule is imported: the import system then sets the package
    attribute to the module, which would shadow the function."""

    def __setattr__(self, name, value):
        if isinstance(value, _types.ModuleType) and _EXPORTS.get(name) == f"{__name__}.{name}":
            value = getattr(value, name)
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(_importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later look-ups skip __getattr__
        return value
    raise AttributeError(f"module 'reds_jax.generators' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
__all__ += ["FLOW_METHODS", "epsilon_to_velocity", "flow"]
__all__ += ["RoomsFlow", "RoomsVelocityUNet", "rooms_flow"]
__all__ += [
    "StyleGAN2",
    "StyleGAN2Checkpoint",
    "StyleGAN2Config",
    "StyleGAN2Generator",
    "convert_stylegan2",
    "load_torch_pickle",
    "stylegan2",
]
