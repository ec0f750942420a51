"""Pure image features ``image [H, W, C] -> vector [m]`` (see :class:`Feature`)."""

from reds_jax.features.arcface import arcface as arcface
from reds_jax.features.arcface import load_iresnet as load_iresnet
from reds_jax.features.closed_form import Feature as Feature
from reds_jax.features.closed_form import blur as blur
from reds_jax.features.closed_form import compose as compose
from reds_jax.features.closed_form import fourier_band as fourier_band
from reds_jax.features.closed_form import grayscale as grayscale
from reds_jax.features.closed_form import highpass as highpass
from reds_jax.features.closed_form import lowpass as lowpass
from reds_jax.features.closed_form import pixels as pixels
from reds_jax.features.closed_form import region as region
from reds_jax.features.faceapi import age_gender as age_gender
from reds_jax.features.faceapi import face_identity as face_identity
from reds_jax.features.faceapi import face_landmarks as face_landmarks
from reds_jax.features.faceapi import load_faceapi_net as load_faceapi_net
from reds_jax.features.rooms_nets import room_factors as room_factors
from reds_jax.features.rooms_nets import sofa_mask as sofa_mask

__all__ = [
    "Feature",
    "blur",
    "compose",
    "fourier_band",
    "grayscale",
    "highpass",
    "lowpass",
    "pixels",
    "region",
]
__all__ += ["age_gender", "face_identity", "face_landmarks", "load_faceapi_net"]
__all__ += ["room_factors", "sofa_mask"]
__all__ += ["arcface", "load_iresnet"]
