"""Build SiteWarden's wheel and download every dependency's wheel for a box's CPU, Python and glibc.

Runs on the Ansible controller. The result is one folder per release and platform with a MANIFEST
(written last, so a half-made folder is never taken for a whole one); boxes install from it offline.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def platform_tags(arch: str, glibc: str) -> list[str]:
    """Every manylinux tag a box with this glibc accepts, newest first, plus the legacy aliases."""
    major, minor = (int(part) for part in glibc.split(".")[:2])
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 16, -1)]
    tags += [f"manylinux2014_{arch}"]
    if arch in ("x86_64", "i686"):
        tags += [f"manylinux2010_{arch}", f"manylinux1_{arch}"]
    return tags + [f"linux_{arch}"]


def run(argv: list[str]) -> None:
    """Run a command, its output shown only when it fails."""
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"failed ({done.returncode}): {' '.join(argv)}")


def main() -> None:
    """Parse the arguments and make the wheelhouse."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--source", type=Path, required=True, help="SiteWarden source tree")
    parser.add_argument("--version", required=True, help="version the source tree must be")
    parser.add_argument("--out", type=Path, required=True, help="wheelhouse folder to make")
    parser.add_argument("--arch", required=True, help="box CPU, as `uname -m` says (aarch64, x86_64)")
    parser.add_argument("--python", required=True, help="box Python as major+minor, e.g. 311")
    parser.add_argument("--glibc", default="2.36", help="box glibc version")
    args = parser.parse_args()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.out.parent, prefix=".part-") as tmp:
        work = Path(tmp)
        run([*pip, "wheel", "--no-deps", "--wheel-dir", str(work), str(args.source)])
        built = sorted(work.glob("sitewarden-*.whl"))
        if [w.name.split("-")[1] for w in built] != [args.version]:
            raise SystemExit(f"the source tree built {[w.name for w in built]}, not sitewarden {args.version}")
        platform_args = [arg for tag in platform_tags(args.arch, args.glibc) for arg in ("--platform", tag)]
        run([*pip, "download", "--dest", str(work), "--find-links", str(work), "--only-binary=:all:",
             *platform_args, "--python-version", args.python, "--implementation", "cp",
             "--abi", f"cp{args.python}", "--abi", "abi3", "--abi", "none", f"sitewarden=={args.version}"])
        wheels = sorted(p.name for p in work.glob("*.whl"))
        (work / "MANIFEST").write_text("".join(f"{name}\n" for name in wheels), encoding="utf-8")
        if args.out.exists():
            shutil.rmtree(args.out)
        work.rename(args.out)
        # TemporaryDirectory's clean-up must find a folder where it made one.
        work.mkdir()
    print(f"{args.out}: {len(wheels)} wheels")


if __name__ == "__main__":
    main()
