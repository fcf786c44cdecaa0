# Source me (`. shell/gpu_env.sh`) after `make venv GPU=1`: puts the CUDA 11 libraries that
# pip installed (nvidia-*-cu11 packages) on the library path, where mxnet-cu112 looks for them.
_venv_python="${VENV:-.venv}/bin/python"
_nvidia_libs=$("$_venv_python" -c '
import glob, os, nvidia
roots = list(nvidia.__path__)
print(":".join(sorted(d for r in roots for d in glob.glob(os.path.join(r, "*", "lib")))))
')
export LD_LIBRARY_PATH="${_nvidia_libs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
unset _venv_python _nvidia_libs
