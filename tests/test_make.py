"""`make test` installs what the tests use: every external command the tests run and every system library the
installed wheels link must come from a Debian package that a bare minimal Debian has (debootstrap
--variant=minbase with python3, make, git and ca-certificates) or one the Makefile's TEST_DEBS installs.

Commands and libraries are mapped to their packages by dpkg on this machine, and package dependencies are
followed through dpkg's own database, so the check is as good as the machine's Debian is: it needs a Debian
with the test packages installed (which `make test` makes sure of). `.ci/fresh-debian` is the slow, complete
check of the same thing on a real bare root.
"""

from __future__ import annotations

import ast
import ctypes.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# What the README asks a new user to have; debootstrap's minbase adds apt and the `required` packages.
BASE_PACKAGES = ("python3", "make", "git", "ca-certificates", "apt")
SUBPROCESS_CALLS = {"run", "Popen", "call", "check_call", "check_output"}
SEARCH_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="maps files to Debian packages with dpkg")


def _test_debs() -> set[str]:
    done = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(REPO),
                           "--eval", "print-test-debs: ; @echo $(TEST_DEBS)", "print-test-debs"],
                          capture_output=True, text=True, check=True)
    return set(done.stdout.split())


def _installed() -> dict[str, dict[str, str]]:
    """Every installed package with its priority, essential flag, dependencies and what it provides."""
    fields = "${db:Status-Abbrev}\t${Package}\t${Priority}\t${Essential}\t${Pre-Depends}, ${Depends}\t${Provides}\n"
    done = subprocess.run(["dpkg-query", "-W", "-f", fields], capture_output=True, text=True, check=True)
    packages = {}
    for line in done.stdout.splitlines():
        status, name, priority, essential, depends, provides = line.split("\t")
        if status.startswith("ii"):
            packages[name.split(":")[0]] = {"priority": priority, "essential": essential, "depends": depends,
                                            "provides": provides}
    return packages


def _names(field: str) -> list[list[str]]:
    """`a (>= 1) | b, c:any` -> [[a, b], [c]]."""
    return [[re.split(r"[\s:(]", alt.strip())[0] for alt in group.split("|") if alt.strip()]
            for group in field.split(",") if group.strip()]


def _available_after_install(extra: set[str]) -> set[str]:
    """The packages a minbase root has once `extra` is installed: the closure of their dependencies."""
    installed = _installed()
    providers: dict[str, list[str]] = {}
    for name, info in installed.items():
        for group in _names(info["provides"]):
            providers.setdefault(group[0], []).append(name)
    todo = [name for name, info in installed.items()
            if info["priority"] == "required" or info["essential"] == "yes"]
    todo += [*BASE_PACKAGES, *extra]
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in installed:
            continue
        seen.add(name)
        for group in _names(installed[name]["depends"]):
            for alt in group:  # the installed alternative(s) of each dependency
                todo += [alt, *providers.get(alt, [])]
    return seen


def _owner(path: str) -> str | None:
    """The package that ships `path`, looked up as dpkg knows it (with or without /usr, after symlinks)."""
    candidates = []
    for p in (path, os.path.realpath(path)):
        candidates += [p, p.removeprefix("/usr")] if p.startswith("/usr/") else [p, "/usr" + p]
    for candidate in candidates:
        done = subprocess.run(["dpkg-query", "-S", candidate], capture_output=True, text=True)
        owners = [line.split(": ", 1)[0] for line in done.stdout.splitlines()
                  if line.endswith(": " + candidate) and not line.startswith("diversion")]
        if owners:
            return owners[0].split(",")[0].split(":")[0]
    return None


def _commands_in(source: Path) -> set[str]:
    """Programs a file runs: literal argv[0] of subprocess calls (and of lambdas wrapping one), shutil.which
    arguments, and module constants naming a program in /usr/bin or /usr/sbin. Programs run inside the
    provisioning tests' own Debian root (`chroot ROOT nft ...`) are the playbook's business, not found here."""
    tree = ast.parse(source.read_text(encoding="utf-8"))
    found: set[str] = set()
    wrappers: set[str] = set()

    def callee(call: ast.Call) -> str:
        func = call.func
        return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""

    def is_subprocess(call: ast.Call) -> bool:
        func = call.func
        return (isinstance(func, ast.Attribute) and func.attr in SUBPROCESS_CALLS
                and isinstance(func.value, ast.Name) and func.value.id == "subprocess")

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Lambda):
            body = node.value.body
            if isinstance(body, ast.Call) and is_subprocess(body):
                wrappers.update(t.id for t in node.targets if isinstance(t, ast.Name))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args:
            first = node.args[0]
            if is_subprocess(node) and isinstance(first, ast.List | ast.Tuple) and first.elts:
                first = first.elts[0]
            elif not (callee(node) in wrappers or (callee(node) == "which" and isinstance(node.func, ast.Attribute)
                                                   and getattr(node.func.value, "id", "") == "shutil")):
                continue
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                found.add(first.value)
    for node in tree.body:  # module constants such as CHROMIUM = "/usr/bin/chromium", handed to Playwright
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            if re.fullmatch(r"/usr/s?bin/[\w.+-]+", node.value.value):
                found.add(node.value.value)
    return found


def _sources() -> list[Path]:
    """The tests, and the project's own modules that run programs for them (brokers, the netns lab)."""
    packages = ("edge", "console", "firmware_bridge", "vision", "netmon", "kiosk")
    return sorted([*(REPO / "tests").glob("*.py"), *(p for pkg in packages for p in (REPO / pkg).rglob("*.py"))])


def test_commands_collected_from_the_tests_include_the_ones_a_bare_debian_lacks() -> None:
    """Guards the scanner itself: the commands the issue found missing on a minbase root are seen."""
    found = set().union(*(_commands_in(path) for path in _sources()))
    assert {"ip", "openssl", "mosquitto_passwd", "debootstrap", "chroot", "/usr/bin/chromium"} <= found, found


def test_every_command_the_tests_run_comes_from_a_package_make_test_installs_or_minbase_has() -> None:
    available = _available_after_install(_test_debs())
    problems = []
    for source in _sources():
        for command in sorted(_commands_in(source)):
            path = command if command.startswith("/") else shutil.which(command, path=SEARCH_PATH)
            if command == "npm" and source.name == "models.py":
                continue  # only `sitewarden models build oidv4-ssd` needs npm; no test builds that model
            if path is None or not os.path.exists(path):
                problems.append(f"{source.name} runs {command!r}, not installed here: add its package to TEST_DEBS")
                continue
            owner = _owner(path)
            if owner is None:
                problems.append(f"{source.name} runs {command!r} ({path}), which no Debian package ships")
            elif owner not in available:
                problems.append(f"{source.name} runs {command!r} from Debian's {owner}, which minbase lacks and "
                                f"the Makefile's TEST_DEBS does not install")
    assert not problems, "\n".join(problems)


def _linked_libraries(files: list[Path]) -> tuple[set[str], list[str]]:
    """System libraries the given ELF files load (ldd, so their own dependencies too) and the unresolved ones.

    Unresolved ones are held against Playwright's node only: wheels ship optional vendor plugins (LiteRT's
    OpenVINO and Qualcomm dispatchers) linking SDKs nobody installs, and a library a test really imports and
    cannot load fails that test loudly anyway."""
    found: set[str] = set()
    missing: list[str] = []
    current = ""
    for start in range(0, len(files), 100):
        done = subprocess.run(["ldd", *map(str, files[start:start + 100])], capture_output=True, text=True)
        for line in done.stdout.splitlines():
            if not line.startswith("\t"):
                current = line.rstrip(":")
            elif "=> not found" in line:
                missing.append(f"{Path(current).name}: {line.split()[0]}")
            elif match := re.search(r"=> (/\S+)", line):
                if not match.group(1).startswith(sys.prefix):
                    found.add(match.group(1))
    return found, missing


def test_every_system_library_the_installed_wheels_link_comes_from_a_package_make_test_installs() -> None:
    """Playwright's bundled node links libatomic.so.1, which a minbase root lacks (the kiosk's browser tests
    failed there); scapy loads libpcap by name to compile netmon's filters."""
    site = Path(sys.prefix) / "lib"
    elves = [p for p in site.rglob("*.so*") if p.is_file()]
    node = next(site.rglob("playwright/driver/node"), None)
    assert node is not None, "playwright is part of the dev install: its driver's node should be here"
    libraries, _ = _linked_libraries(elves)
    node_libraries, missing = _linked_libraries([node])
    assert not missing, "Playwright's node cannot start: " + ", ".join(missing)
    libraries |= node_libraries
    pcap = ctypes.util.find_library("pcap")
    assert pcap, "scapy finds no libpcap: add libpcap0.8 to TEST_DEBS"
    listed = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, check=True).stdout
    libraries |= {line.split("=> ")[1] for line in listed.splitlines() if line.strip().startswith(pcap + " ")}
    available = _available_after_install(_test_debs())
    owners = {library: _owner(library) for library in sorted(libraries)}
    lacking = [f"{library} from Debian's {owner}" for library, owner in owners.items()
               if owner is not None and owner not in available]
    assert not lacking, "minbase lacks these libraries and TEST_DEBS does not install them:\n" + "\n".join(lacking)
