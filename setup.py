"""Install the Cdiscount 3rd-place reproduction: packages data, models, train, predict."""
from setuptools import setup

setup(
    name="cdiscount-mxnet",
    version="0.1.0",
    description="Cdiscount image classification 3rd-place solution as an MXNet/Gluon RecordIO pipeline",
    python_requires=">=3.9",
    packages=["data", "models", "train", "predict"],
    # The exact, tested pins live in requirements.txt (CPU) and requirements-gpu.txt (CUDA 11).
    install_requires=["numpy", "pymongo", "pyzmq", "tqdm", "pandas", "opencv-python", "matplotlib", "psutil"],
)
