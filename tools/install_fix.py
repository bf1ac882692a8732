"""Make PyPI's CUDA-linked torchvision importable next to a CPU-only torch.

Why: PyPI publishes no CPU build of torchvision. Its Linux wheel links its extensions against
``libc10_cuda.so`` / ``libtorch_cuda.so``, which a CPU torch does not have, so ``import
torchvision`` (and therefore open_clip, timm, torchmetrics) fails with "operator torchvision::nms
does not exist". The CUDA symbols are only reached from CUDA kernels, so on CPU they are never
called; this script gives the loader something to bind them to:

1. build ``libc10_cuda.so`` with one aborting stub per referenced ``c10::cuda`` / ``at::cuda``
   symbol, and an empty ``libtorch_cuda.so``, inside the torchvision package;
2. point the extensions' build-machine RPATH at ``$ORIGIN`` (same byte length, edited in place);
3. link ``libcudart.so.*`` to the copy torchvision bundles in ``torchvision.libs``.

Run by ``make install`` only when ``import torchvision`` fails on a CPU torch. Idempotent; a
no-op on CUDA torch builds. Standalone on purpose: it must not import twostream (or torchvision).
Needs gcc, nm and readelf.
"""
from __future__ import annotations

import glob
import os
import re
import subprocess
import sys
import sysconfig
import tempfile

CUDA_SYMBOL = re.compile(r"_ZNK?(3c104cuda|2at4cuda)")
# Symbols that are data, not functions: give them storage instead of a code stub.
DATA_SYMBOLS = {"_ZN3c104cuda20CUDACachingAllocator9allocatorE"}
DEVICE_COUNT = "_ZN3c104cuda12device_countEv"


def _run(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def _extensions(tv_dir: str) -> list[str]:
    return [p for p in glob.glob(os.path.join(tv_dir, "*.so")) if not os.path.basename(p).startswith("lib")]


def _cuda_symbols(exts: list[str]) -> list[str]:
    names = set()
    for so in exts:
        for line in _run("nm", "-D", "--undefined-only", so).splitlines():
            name = line.split()[-1].split("@")[0]
            if CUDA_SYMBOL.match(name):
                names.add(name)
    return sorted(names)


def _stub_source(symbols: list[str]) -> str:
    lines = [
        "#include <stdio.h>",
        "#include <stdlib.h>",
        "static void stub(const char *n) {",
        '  fprintf(stderr, "twostream: CUDA-only torchvision function %s called on a CPU torch\\n", n);',
        "  abort();",
        "}",
    ]
    for s in symbols:
        if s in DATA_SYMBOLS:
            lines.append(f"void *{s}[2] = {{0, 0}};")
        elif s == DEVICE_COUNT:
            lines.append(f"signed char {s}(void) {{ return 0; }}")
        else:
            lines.append(f'void {s}(void) {{ stub("{s}"); }}')
    return "\n".join(lines) + "\n"


def _build_stubs(tv_dir: str, symbols: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for soname, source in (("libc10_cuda.so", _stub_source(symbols)),
                               ("libtorch_cuda.so", "void twostream_empty_stub(void) {}\n")):
            c_file = os.path.join(tmp, soname + ".c")
            with open(c_file, "w") as f:
                f.write(source)
            _run("gcc", "-shared", "-fPIC", "-O2", f"-Wl,-soname,{soname}",
                 "-o", os.path.join(tv_dir, soname), c_file)


def _rpath_to_origin(so: str) -> None:
    match = re.search(r"\((?:RPATH|RUNPATH)\)\s+Library (?:rpath|runpath): \[(.*)\]", _run("readelf", "-d", so))
    if not match or "$ORIGIN" in match.group(1):
        return
    old = b"\0" + match.group(1).encode() + b"\0"
    data = bytearray(open(so, "rb").read())
    at = data.find(old)
    if at < 0 or data.find(old, at + 1) >= 0:
        raise SystemExit(f"install_fix: cannot find a unique RPATH string in {so}")
    new = b"$ORIGIN".ljust(len(old) - 2, b"\0")
    data[at + 1:at + len(old) - 1] = new
    with open(so, "wb") as f:
        f.write(bytes(data))


def _link_cudart(site: str, tv_dir: str) -> None:
    for bundled in sorted(glob.glob(os.path.join(site, "torchvision.libs", "libcudart*.so.*"))):
        major = bundled.rsplit(".so.", 1)[1].split(".")[0]
        link = os.path.join(tv_dir, f"libcudart.so.{major}")
        if not os.path.lexists(link):
            os.symlink(os.path.relpath(bundled, tv_dir), link)


def main() -> int:
    site = sysconfig.get_paths()["purelib"]
    tv_dir = os.path.join(site, "torchvision")
    if os.path.exists(os.path.join(site, "torch", "lib", "libc10_cuda.so")):
        print("install_fix: torch is a CUDA build; nothing to do")
        return 0
    if not os.path.isdir(tv_dir):
        print(f"install_fix: no torchvision under {site}", file=sys.stderr)
        return 1
    exts = _extensions(tv_dir)
    symbols = _cuda_symbols(exts)
    _build_stubs(tv_dir, symbols)
    for so in exts:
        _rpath_to_origin(so)
    _link_cudart(site, tv_dir)
    print(f"install_fix: {len(symbols)} CUDA stubs in {tv_dir}/libc10_cuda.so")
    return 0


if __name__ == "__main__":
    sys.exit(main())
