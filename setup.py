"""Builds flash_attn4._C: one abi3 binary (LibTorch stable ABI, Python limited API) for torch >= 2.10.

C++ sources (op layer, CPU kernels) go through torch's BuildExtension. CUDA sources are compiled here
by nvcc, each arch folder for its own arch only (csrc/sm90 -> sm_90a, csrc/sm100 -> sm_100a), in
parallel, and linked in as objects; torch's CUDA_HOME is not needed, so a CPU-only torch builds the
CUDA kernels too. Environment:
  CUTLASS_DIR      CUTLASS checkout (its include/ is used); else third_party/cutlass/include; else the
                   nvidia-cutlass==4.2.0.0 PyPI package (pip install --no-deps nvidia-cutlass==4.2.0.0)
  CUDA_HOME        CUDA toolkit; else the nvcc on PATH. No nvcc: a CPU-only build.
  FA4_CUDA_ARCHS   e.g. "90a" or "90a;100a"; default: 90a, plus 100a when nvcc supports it; "" = none
  MAX_JOBS         parallel nvcc jobs (default: CPU count)
"""

import concurrent.futures
import glob
import json
import os
import re
import shutil
import subprocess
import sys

from setuptools import find_packages, setup
from torch.utils.cpp_extension import BuildExtension, CppExtension

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join(ROOT, "csrc")
GENERATED = os.path.join(ROOT, "build", "fa4_generated")
# Each arch folder and the nvcc target it is compiled for.
ARCH_FOLDERS = {"90a": "sm90", "100a": "sm100"}
VERSION = "0.1.0"


def find_cutlass():
    candidates = []
    if os.environ.get("CUTLASS_DIR"):
        candidates.append(os.path.join(os.environ["CUTLASS_DIR"], "include"))
    candidates.append(os.path.join(ROOT, "third_party", "cutlass", "include"))
    try:
        import cutlass_library

        candidates.append(os.path.join(os.path.dirname(cutlass_library.__file__), "source", "include"))
    except ImportError:
        pass
    for path in candidates:
        if os.path.isfile(os.path.join(path, "cutlass", "version.h")):
            return path
    return None


def cutlass_version(include):
    text = open(os.path.join(include, "cutlass", "version.h")).read()
    parts = [re.search(rf"#define CUTLASS_{p} (\d+)", text).group(1) for p in ("MAJOR", "MINOR", "PATCH")]
    return ".".join(parts)


def find_nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home and os.path.isfile(os.path.join(home, "bin", "nvcc")):
        return os.path.join(home, "bin", "nvcc"), home
    nvcc = shutil.which("nvcc")
    if not nvcc:
        return None, None
    # nvcc on PATH may be a wrapper script: ask nvcc where its toolkit is.
    dry = subprocess.run([nvcc, "--dryrun", "-v", "-c", "-x", "cu", os.devnull, "-o", os.devnull],
                         capture_output=True, text=True).stderr
    top = re.search(r"^#\$ TOP=(.*)$", dry, re.M)
    return nvcc, os.path.realpath(top.group(1).strip() if top else os.path.join(os.path.dirname(nvcc), ".."))


def nvcc_version(nvcc):
    out = subprocess.check_output([nvcc, "--version"], text=True)
    return re.search(r"release (\d+\.\d+)", out).group(1)


def cuda_archs(nvcc):
    if nvcc is None:
        return []
    if "FA4_CUDA_ARCHS" in os.environ:
        archs = [a for a in re.split(r"[;, ]+", os.environ["FA4_CUDA_ARCHS"]) if a]
        unknown = [a for a in archs if a not in ARCH_FOLDERS]
        if unknown:
            sys.exit(f"FA4_CUDA_ARCHS: unknown arch {unknown}; expected some of {list(ARCH_FOLDERS)}")
        return archs
    supported = subprocess.check_output([nvcc, "--list-gpu-arch"], text=True).split()
    return [a for a in ARCH_FOLDERS if f"compute_{a[:-1]}" in supported]


def cuda_sources(arch):
    folder = os.path.join(CSRC, ARCH_FOLDERS[arch])
    sources = sorted(glob.glob(os.path.join(folder, "**", "*.cu"), recursive=True))
    # Stand-alone device test programs are not part of the library.
    return [s for s in sources if os.sep + "test" + os.sep not in s]


CUTLASS = find_cutlass()
NVCC, CUDA_HOME = find_nvcc()
ARCHS = cuda_archs(NVCC)
ARCH_SOURCES = {arch: cuda_sources(arch) for arch in ARCHS}
HAS_SM90 = bool(ARCH_SOURCES.get("90a"))
HAS_SM90_FWD = any("fwd" in os.path.basename(s) for s in ARCH_SOURCES.get("90a", []))
HAS_SM90_BWD = any("bwd" in os.path.basename(s) for s in ARCH_SOURCES.get("90a", []))
WITH_CUDA = NVCC is not None

if WITH_CUDA and any(ARCH_SOURCES.values()) and CUTLASS is None:
    sys.exit(
        "flash_attn4: CUTLASS headers not found. Set CUTLASS_DIR to a CUTLASS checkout, check one out "
        "into third_party/cutlass, or `pip install --no-deps nvidia-cutlass==4.2.0.0`."
    )


def write_build_config():
    """Build facts the library reports at run time (flash_attn4.build_info())."""
    os.makedirs(os.path.join(GENERATED, "api"), exist_ok=True)
    kernels = [f"sm{arch}:{os.path.splitext(os.path.basename(s))[0]}" for arch, srcs in ARCH_SOURCES.items() for s in srcs]
    fields = {
        "FA4_WITH_CUDA": int(WITH_CUDA),
        "FA4_WITH_SM90": int(HAS_SM90),
        "FA4_WITH_SM90_FWD": int(HAS_SM90_FWD),
        "FA4_WITH_SM90_BWD": int(HAS_SM90_BWD),
    }
    text = "// Generated by setup.py; do not edit.\n#pragma once\n"
    text += "".join(f"#define {k} {v}\n" for k, v in fields.items())
    text += "namespace fa4::api {\n"
    text += f"constexpr const char* kCudaVersion = {json.dumps(nvcc_version(NVCC) if NVCC else '')};\n"
    text += f"constexpr const char* kCudaArchsJson = {json.dumps(', '.join(json.dumps(a) for a in ARCHS))};\n"
    text += f"constexpr const char* kCutlassVersion = {json.dumps(cutlass_version(CUTLASS) if CUTLASS else '')};\n"
    text += f"constexpr const char* kCudaKernelsJson = {json.dumps(', '.join(json.dumps(k) for k in kernels))};\n"
    text += "}  // namespace fa4::api\n"
    path = os.path.join(GENERATED, "api", "build_config.h")
    if not os.path.exists(path) or open(path).read() != text:
        with open(path, "w") as f:
            f.write(text)


def headers_mtime():
    headers = glob.glob(os.path.join(CSRC, "**", "*.h"), recursive=True)
    headers += glob.glob(os.path.join(CSRC, "**", "*.cuh"), recursive=True)
    return max((os.path.getmtime(h) for h in headers), default=0)


def nvcc_flags(arch):
    return [
        "-std=c++17", "-O3", "-DNDEBUG", f"-gencode=arch=compute_{arch},code=sm_{arch}",
        "--expt-relaxed-constexpr", "--expt-extended-lambda", "--use_fast_math",
        "-Xcompiler=-fPIC", "-I" + CSRC, "-I" + GENERATED, "-I" + CUTLASS,
        "-DCUTLASS_ENABLE_GDC_FOR_SM90=1",
    ] + os.environ.get("FA4_NVCC_FLAGS", "").split()


class BuildWithCuda(BuildExtension):
    """Compiles the arch folders with nvcc before torch's build links them into _C."""

    def build_extensions(self):
        write_build_config()
        objects = self.compile_cuda()
        for ext in self.extensions:
            ext.extra_objects = objects
        super().build_extensions()
        for ext in self.extensions:
            self.check_shared_libstdcxx(self.get_ext_fullpath(ext.name))

    @staticmethod
    def check_shared_libstdcxx(path):
        """A second, static libstdc++ inside _C (some toolchains link it that way) crashes the first
        time an error message formats a number: refuse such a build instead of shipping it."""
        try:
            dynamic = subprocess.run(["readelf", "-d", path], capture_output=True, text=True).stdout
        except FileNotFoundError:
            return
        if "libstdc++" not in dynamic:
            sys.exit(f"flash_attn4: {path} does not link libstdc++ dynamically (the C++ compiler "
                     f"{os.environ.get('CXX', 'c++')!r} linked it statically). Build with the system "
                     "compiler, e.g. CXX=/usr/bin/g++.")

    def compile_cuda(self):
        jobs = []
        newest_header = headers_mtime()
        for arch, sources in ARCH_SOURCES.items():
            for src in sources:
                rel = os.path.relpath(src, CSRC)
                obj = os.path.join(self.build_temp, "cuda", arch, rel + ".o")
                stale = not os.path.exists(obj) or os.path.getmtime(obj) < max(os.path.getmtime(src), newest_header)
                jobs.append((arch, src, obj, stale))
        todo = [j for j in jobs if j[3]]
        if todo:
            workers = int(os.environ.get("MAX_JOBS", os.cpu_count() or 1))
            print(f"flash_attn4: nvcc {len(todo)} file(s) for sm_{'/'.join(ARCHS)} with {workers} job(s)", flush=True)
            with concurrent.futures.ThreadPoolExecutor(workers) as pool:
                for (arch, src, obj, _), err in zip(todo, pool.map(lambda j: self.nvcc(*j[:3]), todo)):
                    if err:
                        sys.exit(f"nvcc failed on {src} (sm_{arch}):\n{err}")
        return [obj for _, _, obj, _ in jobs]

    @staticmethod
    def nvcc(arch, src, obj):
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        # ptxas -v: its report is where a serialised wgmma shows up (C7512 / C7514 / C7515 / C7518:
        # "wgmma.mma_async instructions are serialized", a wait after every wgmma, ~25 % slower,
        # and nothing else says so), and a wait ptxas inserts on its own (C7517: "warpgroup.wait is
        # injected", e.g. right after a GEMM meant to run under later work); such a build is
        # refused.
        cmd = [NVCC, *nvcc_flags(arch), "-Xptxas=-v", "-c", src, "-o", obj]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            return " ".join(cmd) + "\n" + proc.stdout + proc.stderr
        serialized = [line for line in (proc.stdout + proc.stderr).splitlines()
                      if ("wgmma" in line and "serialized" in line)
                      or "warpgroup.wait is injected" in line]
        if serialized:
            os.remove(obj)
            return ("ptxas serialised the wgmma instructions or injected waits in:\n" +
                    "\n".join(serialized) + "\nKeep each GEMM issue and its warpgroup_wait on one "
                    "straight path (not under separate branches of the same condition, not across "
                    "loop iterations), and leave its accumulator alone until the wait.")
        print(f"  built {os.path.relpath(src, ROOT)} (sm_{arch})", flush=True)
        return None


def extension():
    sources = sorted(glob.glob(os.path.join("csrc", "api", "*.cpp")) + glob.glob(os.path.join("csrc", "cpu", "*.cpp")))
    include_dirs = [CSRC, GENERATED]
    library_dirs = []
    libraries = []  # CppExtension adds c10, torch, torch_cpu (and no torch_python with py_limited_api)
    if WITH_CUDA:
        include_dirs.append(os.path.join(CUDA_HOME, "include"))
        if CUTLASS:
            include_dirs.append(CUTLASS)
        library_dirs += [os.path.join(CUDA_HOME, d) for d in ("lib64", "lib") if os.path.isdir(os.path.join(CUDA_HOME, d))]
        # Static cudart: the binary needs no libcudart at load time, so it imports on CPU-only machines.
        libraries += ["cudart_static", "dl", "rt", "pthread"]
    return CppExtension(
        "flash_attn4._C",
        sources,
        include_dirs=include_dirs,
        library_dirs=library_dirs,
        libraries=libraries,
        extra_compile_args={"cxx": ["-O3", "-std=c++17", "-fvisibility=hidden",
                                    "-DTORCH_TARGET_VERSION=0x020a000000000000"]},
        py_limited_api=True,
    )


setup(
    name="flash_attn4",
    version=VERSION,
    description="FlashAttention-4-class exact attention for PyTorch (CUTLASS/CuTe kernels, CPU reference)",
    packages=find_packages(include=["flash_attn4", "flash_attn4.*"]),
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildWithCuda},
    options={"bdist_wheel": {"py_limited_api": "cp310"}},  # torch >= 2.10 needs CPython >= 3.10
    python_requires=">=3.10",
    install_requires=["torch>=2.10"],
)
