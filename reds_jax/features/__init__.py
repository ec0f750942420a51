"""Pure image features ``image [H, W, C] -> vector [m]`` (see :class:`Feature`)."""

from .arcface import arcface as arcface
from .arcface import load_iresnet as load_iresnet
from .closed_form import Feature as Feature
from .closed_form import blur as blur
from .closed_form import compose as compose
from .closed_form import fourier_band as fourier_band
from .closed_form import grayscale as grayscale
from .closed_form import highpass as highpass
from .closed_form import lowpass as lowpass
from .closed_form import pixels as pixels
from .closed_form import region as region
from .faceapi import age_gender as age_gender
from .faceapi import face_identity as face_identity
from .faceapi import face_landmarks as face_landmarks
from .faceapi import load_faceapi_net as load_faceapi_net
from .rooms_nets import room_factors as room_factors
from .rooms_nets import sofa_mask as sofa_mask

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
