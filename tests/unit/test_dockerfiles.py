"""Static checks of images/*/Dockerfile and the three locks (no Docker daemon or registry is needed).

Each Dockerfile is parsed into stages and instructions; the invariants that keep images buildable
here (Debian docker.io 20.10, no registry: no `# syntax=` frontend, no hub image, no named build
context), reproducible and safe are asserted: the mmdebstrap base by tag, UID 10001 in the final
stage, no remote ADD, no secret-looking ENV/ARG, the CA bundle only as a build secret, runtime pins
only, dependency layers before source layers. The locks: runtime and dev disjoint, and the GPU lock
within Unsloth's caps, equal to the runtime lock everywhere else. The build context is checked too:
every COPY source exists and survives .dockerignore. The real builds: tests/integration/test_pipeline_docker.py.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSW(OR)?D|CREDENTIAL)", re.IGNORECASE)
SOURCE_DIRS = ("components", "pipelines", "serving")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class Dockerfile:
    path: Path
    text: str
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def resolve(self, ref: str) -> str:
        return re.sub(r"\$\{?(\w+)\}?", lambda m: self.global_args.get(m.group(1), m.group(0)), ref)


def parse(path: Path) -> Dockerfile:
    text = path.read_text()
    logical: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):  # comment inside a continued instruction
            continue
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        logical.append(buf + line)
        buf = ""
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = args.split()
            parts = [p for p in parts if not p.startswith("--platform")]
            name = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(parts[0], name))
        elif not stages and keyword == "ARG":
            key, _, default = args.partition("=")
            global_args[key.strip()] = default.strip()
        elif stages:
            stages[-1].instructions.append((keyword, args.strip()))
    return Dockerfile(path, text, global_args, stages)


@pytest.fixture(params=DOCKERFILES, ids=lambda p: p.parent.name)
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse(request.param)


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_pins(path: str | Path = "requirements.lock") -> dict[str, str]:
    pins = {}
    for line in (ROOT / path).read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[norm(name)] = version.strip()
    return pins


GPU_LOCK = "images/train-gpu/requirements-gpu.lock"


def test_all_images_are_here() -> None:
    assert {p.parent.name for p in DOCKERFILES} >= {"base", "train-gpu", "serve", "mlflow"}


def test_builds_need_no_registry(dockerfile: Dockerfile) -> None:
    # A `# syntax=` line pulls a frontend image; named build contexts need buildx; both need a registry.
    assert not re.search(r"^#\s*syntax\s*=", dockerfile.text, re.M | re.I), dockerfile.path
    seen: set[str] = set()
    for stage in dockerfile.stages:
        # Only the local mmdebstrap base (scripts/images.sh makes it), by a tag, or an earlier stage.
        local_base = re.fullmatch(r"prodtune/bookworm-py:\$\{BASE_TAG\}", stage.base)
        assert stage.base in seen or local_base, stage.base
        assert re.fullmatch(r"12(-[0-9a-f]+)?", dockerfile.global_args["BASE_TAG"])
        for kw, args in stage.instructions:
            for ref in re.findall(r"--from=(\S+)", args) + re.findall(r"\bfrom=([^,\s]+)", args):
                assert ref in seen, f"{dockerfile.path}: {kw} takes from {ref!r}, not an earlier stage"
        if stage.name:
            seen.add(stage.name)


def test_ca_bundle_is_a_build_secret_never_a_layer(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for kw, args in stage.instructions:
            if kw in ("COPY", "ADD"):
                assert not re.search(r"\.(crt|pem)\b|ssl/certs", args), f"{dockerfile.path}: {kw} {args}"
            if kw == "RUN" and re.search(r"pip install (?!--no-deps --no-build-isolation)", args):
                # This install reaches the index: only through the secret-mounted CA bundle.
                assert "--mount=type=secret,id=ca" in args and "PIP_CERT=/run/secrets/ca" in args, args
            if kw == "ENV":
                assert "/run/secrets" not in args


def test_images_hold_runtime_pins_only(dockerfile: Dockerfile) -> None:
    assert "requirements-dev.lock" not in dockerfile.text
    installs = [a for s in dockerfile.stages for k, a in s.instructions if k == "RUN" and "pip install" in a]
    for args in installs:
        if "-r /src/requirements.lock" in args or "-r /src/requirements-gpu.lock" in args:
            assert "--no-deps" in args, "a complete lock installs without re-resolving"


def test_final_stage_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    users = [args for kw, args in dockerfile.final.instructions if kw == "USER"]
    assert users, f"{dockerfile.path}: no USER in the final stage"
    assert users[-1] == "10001:10001", users[-1]  # Pod Security `restricted` needs a numeric non-root UID
    # Nothing after the last USER runs as root again.
    kws = [kw for kw, _ in dockerfile.final.instructions]
    assert "RUN" not in kws[len(kws) - kws[::-1].index("USER") :]


def test_no_remote_add_and_no_secret_looking_env(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for kw, args in stage.instructions:
            if kw == "ADD":
                assert not re.search(r"https?://|git@", args), f"remote ADD: {args}"
            if kw in ("ENV", "ARG"):
                names = re.findall(r"(\w+)=", args) or [args.split()[0]]
                for name in names:
                    assert not SECRET_NAME.search(name), f"{dockerfile.path}: {kw} {name} looks like a secret"
    for name in dockerfile.global_args:
        assert not SECRET_NAME.search(name), name


def test_dependencies_are_installed_before_the_source_is_copied(dockerfile: Dockerfile) -> None:
    stages = [s for s in dockerfile.stages if any(".lock" in a for k, a in s.instructions if k == "COPY")]
    assert stages, f"{dockerfile.path}: no lock copied"
    for stage in stages:
        ins = stage.instructions
        copy_lock = next(i for i, (k, a) in enumerate(ins) if k == "COPY" and ".lock" in a)
        install = next(i for i, (k, a) in enumerate(ins) if k == "RUN" and "pip install" in a and "-r " in a)
        assert copy_lock < install
        source_copies = [
            i for i, (k, a) in enumerate(ins) if k == "COPY" and any(d in a.split() for d in SOURCE_DIRS)
        ]
        if source_copies:  # the project itself: after its locked deps, without re-resolving them
            project = next(
                i
                for i, (k, a) in enumerate(ins)
                if k == "RUN" and "pip install --no-deps --no-build-isolation /src" in a
            )
            assert install < min(source_copies) < project


def test_copy_sources_exist_and_survive_dockerignore(dockerfile: Dockerfile) -> None:
    patterns = [
        p.strip()
        for p in (ROOT / ".dockerignore").read_text().splitlines()
        if p.strip() and not p.startswith("#")
    ]

    def ignored(path: str) -> bool:
        # Docker semantics, simplified: a pattern matches the path or one of its parent dirs from the
        # context root; a leading `**/` matches at any depth; later `!` patterns re-include.
        verdict = False
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        for pattern in patterns:
            negate = pattern.startswith("!")
            pat = pattern.lstrip("!")
            if pat.startswith("**/"):
                hit = any(fnmatch.fnmatch(p.rsplit("/", 1)[-1], pat[3:]) for p in prefixes)
            else:
                hit = any(fnmatch.fnmatch(p, pat) for p in prefixes)
            if hit:
                verdict = not negate
        return verdict

    for stage in dockerfile.stages:
        for kw, args in stage.instructions:
            # bind mounts from the context: staged by scripts/images.sh, so they need not exist here
            for src in re.findall(r"--mount=type=bind,source=([^,\s]+)", args):
                assert src.startswith("images/.context/") and not ignored(src), src
            if kw != "COPY" or "--from=" in args:
                continue
            sources = [a for a in args.split() if not a.startswith("--")][:-1]
            for src in sources:
                assert (ROOT / src).exists(), f"{dockerfile.path}: COPY {src} does not exist"
                assert not ignored(src), f"{dockerfile.path}: COPY {src} is excluded by .dockerignore"
    for must in (
        ".venv",
        ".git",
        ".prodtune",
        "serving/x/model.gguf",
        "local_outputs",
        "serving/x/__pycache__/a.pyc",
    ):
        assert ignored(must), f".dockerignore lets {must} into the build context"
    assert not ignored("serving/retrieval/data/x.json")  # root-anchored patterns stay at the root


def test_runtime_and_dev_locks_are_disjoint_and_dev_tools_stay_out_of_images() -> None:
    runtime, dev = lock_pins(), lock_pins("requirements-dev.lock")
    assert not set(runtime) & set(dev), set(runtime) & set(dev)
    for tool in ("pytest", "ruff", "selenium", "kubernetes-validate"):
        assert tool in dev and tool not in runtime, tool
    for needed in ("torch", "llama-cpp-python", "kfp", "mlflow", "transformers", "trl", "setuptools"):
        assert needed in runtime, needed
    assert runtime["torch"].endswith("+cpu")


def test_gpu_lock_resolves_within_unsloths_caps_and_matches_the_runtime_lock_elsewhere() -> None:
    from packaging.specifiers import SpecifierSet

    gpu, runtime = lock_pins(GPU_LOCK), lock_pins()
    assert gpu["unsloth"] == "2026.10.9" and gpu["unsloth-zoo"] == "2026.10.9" and "bitsandbytes" in gpu
    # Unsloth 2026.10.9 / unsloth-zoo pin these (the CPU lock is newer: that is why they differ).
    for name, cap in {"transformers": "<=5.17", "trl": "<=1.15", "datasets": "<5"}.items():
        assert gpu[name] in SpecifierSet(cap), f"{name} {gpu[name]} outside Unsloth's {cap}"
    # PyPI's torch (the CUDA build), the same release as the CPU lock's +cpu one; no llama-cpp-python.
    assert gpu["torch"] == runtime["torch"].split("+")[0] and "+" not in gpu["torch"]
    assert any(n.startswith("nvidia-") for n in gpu) and "llama-cpp-python" not in gpu
    # Elsewhere the GPU image runs the same versions as the CPU path: only the names lock.sh leaves
    # free (listed in requirements-gpu.in) may differ.
    text = (IMAGES / "train-gpu" / "requirements-gpu.in").read_text()
    free = {norm(n) for n in re.search(r"^# gpu-free:(.*)$", text, re.M).group(1).split()}
    differ = {n for n in set(gpu) & set(runtime) if gpu[n] != runtime[n] and n != "torch"}
    assert differ <= free, (
        f"GPU pins differ from requirements.lock beyond {sorted(free)}: {sorted(differ - free)}"
    )
    df = parse(IMAGES / "train-gpu" / "Dockerfile")
    assert "requirements-gpu.lock" in df.text and "requirements.lock" not in df.text


def test_serve_image_carries_llama_cpp_python_and_a_healthcheck() -> None:
    df = parse(IMAGES / "serve" / "Dockerfile")
    assert "llama-cpp-python" in lock_pins()
    runs = [a for k, a in df.final.instructions if k == "RUN"]
    assert any("source=images/.context/wheels" in r and "--find-links /wheels" in r for r in runs)
    assert any("import llama_cpp" in r for r in runs)
    assert ("EXPOSE", "8000 8501") in df.final.instructions
    health = next(a for k, a in df.final.instructions if k == "HEALTHCHECK")
    assert "/healthz" in health
    # the chart's ui.script
    assert (ROOT / "serving" / "ui" / "rag.py").exists() and "/app/serving" in df.text


def test_base_image_bakes_the_pinned_gguf_converter() -> None:
    df = parse(IMAGES / "base" / "Dockerfile")
    version = next(
        a.split("=", 1)[1]
        for k, a in df.final.instructions
        if k == "ARG" and a.startswith("LLAMA_CPP_VERSION=")
    )
    assert version == lock_pins()["llama-cpp-python"]
    assert "ensure_converter" in df.text
    # KFP supplies the whole command (Kubernetes and kfp.local.DockerRunner): no ENTRYPOINT to prepend.
    assert not any(k == "ENTRYPOINT" for k, _ in df.final.instructions)


def test_mlflow_image_pins_match_the_locks() -> None:
    pins = {**lock_pins(), **lock_pins("requirements-dev.lock")}
    for line in (IMAGES / "mlflow" / "requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"unpinned {line}"
            key = norm(name)
            assert key in pins, f"{name} is in no lock"
            assert pins[key] == version, f"{name}: image {version}, lock {pins[key]}"
    df = parse(IMAGES / "mlflow" / "Dockerfile")
    assert any(k == "HEALTHCHECK" and "/health" in a for k, a in df.final.instructions)
